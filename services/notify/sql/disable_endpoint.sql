-- Disable an active endpoint; no row when it was not active.
UPDATE webhook_endpoints SET state = 'disabled', disabled_reason = $2, disabled_at = now(), throttled_until = NULL,
    updated_at = now()
WHERE id = $1 AND state = 'active'
RETURNING partner_id, url
