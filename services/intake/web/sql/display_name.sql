-- How the signed-in person is named in the page header (their name, or their email if they have none).
SELECT coalesce(nullif(display_name, ''), email) FROM staff WHERE id = $1
