-- A successful sign-in forgets earlier failures.
UPDATE staff SET failed_logins = 0, locked_until = NULL WHERE id = $1
