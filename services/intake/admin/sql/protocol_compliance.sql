-- Child-protection protocol compliance over the window (steps of referrals received since $1, null:
-- ever), per region and step, as of $2: done on time, done late, open (not yet due or no deadline) and
-- overdue (past its deadline, not done). Codes and counts only.
SELECT coalesce(r.region, 'out_of_area') AS region, s.code,
       count(*) FILTER (WHERE s.completed_at IS NOT NULL AND (s.due_at IS NULL OR s.completed_at <= s.due_at))::int AS on_time,
       count(*) FILTER (WHERE s.completed_at IS NOT NULL AND s.completed_at > s.due_at)::int AS late,
       count(*) FILTER (WHERE s.completed_at IS NULL AND (s.due_at IS NULL OR s.due_at > $2))::int AS open,
       count(*) FILTER (WHERE s.completed_at IS NULL AND s.due_at <= $2)::int AS overdue,
       min(s.position) AS position
FROM protocol_steps s JOIN referrals r ON r.id = s.referral_id
WHERE ($1::timestamptz IS NULL OR r.received_at >= $1) AND r.status <> 'withdrawn'
GROUP BY 1, 2
ORDER BY 1, position, 2
