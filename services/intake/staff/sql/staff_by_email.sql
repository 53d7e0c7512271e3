-- A staff account by email (case-insensitively).
SELECT id, role FROM staff WHERE lower(email) = lower($1)
