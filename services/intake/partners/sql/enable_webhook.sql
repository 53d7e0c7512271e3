-- Re-enables a disabled endpoint with a clean record of failures.
UPDATE webhook_endpoints
SET state = 'active', disabled_at = NULL, disabled_reason = NULL, consecutive_failures = 0,
    failing_since = NULL, throttled_until = NULL, updated_at = now()
WHERE id = $1 AND partner_id = $2 AND state = 'disabled'
RETURNING id, url, events, state, created_at, verified_at, last_success_at, failing_since, consecutive_failures,
          disabled_at, disabled_reason,
          CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END AS previous_secret_expires_at
