-- One of the partner's endpoints ($2: the partner) and its health.
SELECT id, url, events, state, created_at, verified_at, last_success_at, failing_since, consecutive_failures,
       disabled_at, disabled_reason,
       CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END AS previous_secret_expires_at
FROM webhook_endpoints
WHERE id = $1 AND partner_id = $2 AND state <> 'deleted'
