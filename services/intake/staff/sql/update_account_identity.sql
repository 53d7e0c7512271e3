-- Email, name and home region (the first of the profile's regions).
UPDATE staff SET email = $2, display_name = $3, region = $4 WHERE id = $1
