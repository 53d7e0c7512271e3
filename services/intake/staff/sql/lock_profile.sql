-- A case manager's routing profile, locked for a change.
SELECT * FROM case_managers WHERE staff_id = $1 FOR UPDATE
