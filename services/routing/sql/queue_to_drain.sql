-- Waiting referrals worth retrying: nobody was eligible, and their region (in $1, or any when $1 is
-- null) has at least one active case manager with a free place. Most urgent, then oldest, first.
WITH open_regions AS (
    SELECT DISTINCT r.code
    FROM case_managers c CROSS JOIN LATERAL unnest(c.regions) AS r(code)
    WHERE c.status = 'active' AND c.active_count < c.capacity
      AND ($1::text[] IS NULL OR r.code = ANY ($1::text[]))
)
SELECT q.id
FROM referrals q JOIN open_regions o ON o.code = q.region
WHERE q.status = 'unroutable' AND q.unroutable_reason = 'no_eligible_case_manager'
ORDER BY (q.urgency = 'urgent') DESC, q.received_at, q.id
LIMIT $2
