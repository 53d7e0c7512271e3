-- Every staff account, with the routing profile of the case managers among them.
SELECT s.id, coalesce(nullif(s.display_name, ''), s.email) AS name, s.email, s.role, s.region,
       c.regions, c.needs, c.languages, c.capacity, c.active_count, c.status
FROM staff s LEFT JOIN case_managers c ON c.staff_id = s.id
ORDER BY s.role, name
