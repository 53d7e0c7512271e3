-- Revokes a key now (a second revocation keeps the first time and reason).
UPDATE api_keys
SET revoked_at = coalesce(revoked_at, now()), revoked_reason = coalesce(revoked_reason, $2)
WHERE id = $1
RETURNING id
