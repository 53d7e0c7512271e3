-- Every attempt made at one delivery, in order.
SELECT attempt, started_at, latency_ms, status_code, error, outcome, next_attempt_at
FROM delivery_attempts
WHERE delivery_id = $1
ORDER BY id
