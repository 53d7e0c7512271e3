-- A fresh round of attempts (same id, so the same webhook-id), due now.
UPDATE deliveries SET state = 'pending', round_start = attempts, next_attempt_at = now(), updated_at = now()
WHERE id = $1
RETURNING *
