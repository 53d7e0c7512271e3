-- The staff member a command names, as the database knows them (visible to themselves under RLS).
SELECT role, region, deactivated_at FROM staff WHERE id = $1
