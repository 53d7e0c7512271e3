-- Each case manager's load against their capacity (staff names: the roster's, never a youth's).
SELECT c.staff_id, coalesce(nullif(s.display_name, ''), s.email) AS name, c.regions,
       c.active_count, c.capacity, c.status
FROM case_managers c JOIN staff s ON s.id = c.staff_id
ORDER BY c.regions[1], name
