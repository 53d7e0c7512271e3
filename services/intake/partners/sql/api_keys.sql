-- API keys (never the keys themselves: a prefix to recognise them), of one partner ($1) or all.
SELECT id, partner_id, prefix, label, created_at, last_used_at, expires_at, revoked_at,
       (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())) AS active
FROM api_keys
WHERE ($1::uuid IS NULL OR partner_id = $1)
ORDER BY partner_id, created_at
