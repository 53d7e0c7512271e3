-- What a profile change may also change on the staff account.
SELECT email, display_name, region FROM staff WHERE id = $1
