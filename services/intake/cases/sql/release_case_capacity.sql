-- A closed case no longer counts against its case manager (their own row: allowed by RLS).
UPDATE case_managers SET active_count = active_count - 1, updated_at = now()
WHERE staff_id = $1 AND active_count > 0
