-- As lock_places.sql, for a batch that already holds case managers' rows: it must not wait (that
-- could close a cycle with another batch), so a row held elsewhere fails at once.
SELECT staff_id, status, active_count, capacity FROM case_managers
WHERE staff_id = ANY ($1::uuid[])
ORDER BY staff_id
FOR UPDATE NOWAIT
