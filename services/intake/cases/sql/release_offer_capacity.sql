-- A declined offer no longer counts against the case manager's capacity (their own row: RLS allows it).
UPDATE case_managers SET active_count = active_count - 1 WHERE staff_id = $1 AND active_count > 0
