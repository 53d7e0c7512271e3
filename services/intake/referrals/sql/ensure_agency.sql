-- The coordinating agency's own partner row (its intake's referrals name it), made once, on first use.
WITH made AS (
    INSERT INTO partners (id, name, kind) VALUES ($1, $2, 'coordinating_agency')
    ON CONFLICT DO NOTHING
    RETURNING id
)
SELECT id FROM made
UNION ALL
SELECT id FROM partners WHERE kind = 'coordinating_agency'
LIMIT 1
