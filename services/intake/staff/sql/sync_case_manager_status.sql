-- A deactivated case manager leaves routing ('inactive'); reactivated, they are available again.
UPDATE case_managers
SET status = CASE WHEN $2 THEN 'active' ELSE 'inactive' END, away_until = NULL, updated_at = now()
WHERE staff_id = $1 AND (status = 'inactive') = $2
