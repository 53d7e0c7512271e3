-- What still waits for a disabled endpoint goes to the dead-letter list (an admin can replay it later).
WITH moved AS (
    UPDATE deliveries SET state = 'dead', last_error = 'endpoint_disabled', updated_at = now()
    WHERE endpoint_id = $1 AND state IN ('pending', 'failed')
    RETURNING 1
)
SELECT count(*) FROM moved
