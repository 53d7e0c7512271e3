-- An account's id by email (case-insensitively), for the command line.
SELECT id FROM staff WHERE lower(email) = lower($1)
