-- $2 more failed attempts for an endpoint; $3 seconds of throttling when the receiver asked for it.
UPDATE webhook_endpoints
SET consecutive_failures = consecutive_failures + $2,
    failing_since = coalesce(failing_since, now()),
    throttled_until = CASE WHEN $3::float8 IS NULL THEN throttled_until
                           ELSE greatest(coalesce(throttled_until, now()), now() + make_interval(secs => $3::float8)) END,
    updated_at = now()
WHERE id = $1
RETURNING state, consecutive_failures, failing_since, now() AS now
