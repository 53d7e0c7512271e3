-- Not sent after all (consent withdrawn, endpoint deleted or disabled, offer answered). The claim
-- counted an attempt that was never made: give it back.
UPDATE deliveries
SET state = $3, last_error = $4, attempts = attempts - 1, updated_at = now()
WHERE id = $1 AND attempts = $2 AND state IN ('pending', 'failed')
RETURNING 1
