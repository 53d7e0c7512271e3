-- The deleted endpoint's waiting deliveries stop; returns how many.
WITH c AS (
    UPDATE deliveries SET state = 'cancelled', last_error = 'endpoint_deleted', updated_at = now()
    WHERE endpoint_id = $1 AND state IN ('pending', 'failed')
    RETURNING 1
)
SELECT count(*) FROM c
