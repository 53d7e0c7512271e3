-- An offer or case ended: one place back (never below zero, whatever happened before).
UPDATE case_managers SET active_count = active_count - 1 WHERE staff_id = $1 AND active_count > 0
