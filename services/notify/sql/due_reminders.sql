-- Open offers close to respond_by without a reminder yet. "Close" is the configured lead time ($1 s),
-- but at most a quarter of the offer's window, so a short urgent offer is not reminded at once.
SELECT a.id, a.referral_id, a.case_manager_id, a.respond_by
FROM assignments a
WHERE a.state = 'offered'
  AND a.respond_by > now()
  AND now() >= a.respond_by - least(make_interval(secs => $1), (a.respond_by - a.offered_at) / 4)
  AND NOT EXISTS (SELECT 1 FROM offer_reminders r WHERE r.assignment_id = a.id)
ORDER BY a.respond_by
LIMIT $2
