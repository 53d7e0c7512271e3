-- One case manager's profile (see profiles.sql for the LEFT JOIN).
SELECT c.staff_id, coalesce(s.email, '') AS email, coalesce(s.display_name, '') AS display_name, c.regions,
       c.needs, c.languages, c.specialisms, c.capacity, c.active_count, c.status, c.away_until, c.updated_at
FROM case_managers c LEFT JOIN staff s ON s.id = c.staff_id
WHERE c.staff_id = $1
