UPDATE webhook_endpoints
SET consecutive_failures = 0,
    failing_since = NULL,
    last_success_at = now(),
    verified_at = coalesce(verified_at, now()),
    updated_at = now()
WHERE id = any($1::uuid[])
