-- The person's current password hash (to check the current password before a change).
SELECT password_hash FROM staff WHERE id = $1 AND deactivated_at IS NULL
