-- A changed routing profile (never active_count: routing's).
UPDATE case_managers
SET regions = $2, needs = $3, languages = $4, capacity = $5, status = $6, away_until = $7, specialisms = $8,
    updated_at = now()
WHERE staff_id = $1
