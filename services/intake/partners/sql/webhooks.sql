-- A partner's endpoints and their health (the previous secret's expiry only while it still signs).
SELECT id, url, events, state, created_at, verified_at, last_success_at, failing_since, consecutive_failures,
       disabled_at, disabled_reason,
       CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END AS previous_secret_expires_at
FROM webhook_endpoints
WHERE partner_id = $1 AND state <> 'deleted'
ORDER BY created_at, id
