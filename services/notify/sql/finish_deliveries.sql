-- Record the outcome of a batch of attempts, each unless its row moved on meanwhile (replayed,
-- cancelled, or re-claimed after the lease ran out): then the attempt is logged but the row is left.
-- Per row: id, attempt number, new state, seconds until the next attempt (NULL: none), status, error.
UPDATE deliveries d
SET state = o.state,
    next_attempt_at = CASE WHEN o.delay IS NULL THEN d.next_attempt_at
                           ELSE now() + make_interval(secs => o.delay) END,
    last_status = o.status,
    last_error = o.error,
    delivered_at = CASE WHEN o.state = 'delivered' THEN now() ELSE d.delivered_at END,
    updated_at = now()
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::float8[], $5::int[], $6::text[])
     AS o (id, attempt, state, delay, status, error)
WHERE d.id = o.id AND d.attempts = o.attempt AND d.state IN ('pending', 'failed')
RETURNING d.id
