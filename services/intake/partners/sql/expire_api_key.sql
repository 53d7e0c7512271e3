-- A replaced key keeps working for the grace period ($2 seconds), never longer than it would have.
UPDATE api_keys
SET expires_at = least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => $2))
WHERE id = $1 AND revoked_at IS NULL
RETURNING partner_id, label
