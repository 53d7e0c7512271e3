-- One API key's record.
SELECT id, partner_id, prefix, label, created_at, last_used_at, expires_at, revoked_at,
       (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())) AS active
FROM api_keys
WHERE id = $1
