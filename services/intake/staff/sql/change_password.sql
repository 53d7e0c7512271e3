-- The person's own new password: no longer one-time; other tokens stop working. Returns the new version.
UPDATE staff SET password_hash = $2, password_change_required = false, token_version = token_version + 1
WHERE id = $1
RETURNING token_version, role, region
