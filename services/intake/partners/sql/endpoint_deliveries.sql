-- The newest deliveries to an endpoint (the next attempt only while one is still to come).
SELECT id, kind, state, attempts, last_status, last_error, created_at, delivered_at,
       CASE WHEN state IN ('pending', 'failed') THEN next_attempt_at END AS next_attempt_at
FROM deliveries
WHERE endpoint_id = $1
ORDER BY created_at DESC, id DESC
LIMIT $2
