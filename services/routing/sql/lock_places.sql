-- A routing batch's case managers (to take places from or give one back), locked in staff_id order in
-- one statement: every batch locks in this order, so two batches never wait on each other in a cycle.
SELECT staff_id, status, active_count, capacity FROM case_managers
WHERE staff_id = ANY ($1::uuid[])
ORDER BY staff_id
FOR UPDATE
