-- A supervisor's or admin's choice: no capacity condition, they may knowingly go over it. No row when
-- row-level security lets the actor see the case manager but not change them.
UPDATE case_managers SET active_count = active_count + 1 WHERE staff_id = $1
RETURNING active_count, capacity
