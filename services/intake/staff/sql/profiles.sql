-- Case manager profiles, of one region ($1) and state ($2) or all. LEFT JOIN: a supervisor sees the staff
-- row of case managers whose home region is theirs, but the profile of everyone serving their region.
SELECT c.staff_id, coalesce(s.email, '') AS email, coalesce(s.display_name, '') AS display_name, c.regions,
       c.needs, c.languages, c.specialisms, c.capacity, c.active_count, c.status, c.away_until, c.updated_at
FROM case_managers c LEFT JOIN staff s ON s.id = c.staff_id
WHERE ($1::text IS NULL OR c.regions @> ARRAY[$1::text]) AND ($2::text IS NULL OR c.status = $2)
ORDER BY lower(s.display_name), c.staff_id
