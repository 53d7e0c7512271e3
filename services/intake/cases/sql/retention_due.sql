-- Closed referrals past the retention period ($1 days) whose PII still exists.
SELECT * FROM referrals
WHERE status = 'closed' AND pii_shredded_at IS NULL AND closed_at < now() - make_interval(days => $1)
ORDER BY closed_at
LIMIT $2
FOR UPDATE SKIP LOCKED
