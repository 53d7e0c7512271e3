-- A new routing profile (active_count starts at 0 and is routing's to change).
INSERT INTO case_managers (staff_id, regions, needs, languages, capacity, status, away_until, specialisms)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
