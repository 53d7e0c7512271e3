-- Backs off exponentially after $2 failures in a row: 1, 2, 4 ... minutes, up to 15.
UPDATE staff
SET failed_logins = failed_logins + 1,
    locked_until = CASE WHEN failed_logins + 1 >= $2
        THEN now() + least(interval '15 minutes', interval '1 minute' * 2 ^ (failed_logins + 1 - $2))
        ELSE locked_until END
WHERE id = $1
