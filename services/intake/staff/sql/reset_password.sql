-- A new one-time password: earlier tokens stop working, and the next sign-in must change it.
UPDATE staff SET password_hash = $2, password_change_required = true, token_version = token_version + 1
WHERE id = $1
RETURNING email
