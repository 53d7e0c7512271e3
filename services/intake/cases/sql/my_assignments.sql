-- A case manager's own offers and cases, newest first, optionally of one state ($2).
SELECT a.id, a.referral_id, a.state, a.offered_at, a.respond_by, a.responded_at, r.region, r.needs, r.urgency
FROM assignments a JOIN referrals r ON r.id = a.referral_id
WHERE a.case_manager_id = $1 AND ($2::text IS NULL OR a.state = $2)
ORDER BY a.offered_at DESC
LIMIT 200
