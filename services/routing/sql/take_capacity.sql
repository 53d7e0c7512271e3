-- The capacity guard: succeeds only while the case manager still has room, atomically.
UPDATE case_managers SET active_count = active_count + 1
WHERE staff_id = $1 AND status = 'active' AND active_count < capacity
RETURNING staff_id
