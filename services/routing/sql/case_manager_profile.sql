-- What a manual assignment checks and warns about (visible to the actor under RLS, or no row).
SELECT staff_id, regions, languages, capacity, status, away_until FROM case_managers WHERE staff_id = $1
