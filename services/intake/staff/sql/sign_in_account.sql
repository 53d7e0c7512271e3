-- The account signing in (by email, case-insensitively) and how long it is still locked, in seconds.
SELECT id, role, region, password_hash, failed_logins, locked_until,
       greatest(0, extract(epoch FROM locked_until - now()))::int AS locked_for
FROM staff
WHERE lower(email) = lower($1)
