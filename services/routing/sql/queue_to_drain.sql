-- Waiting referrals worth retrying: nobody was eligible, their region (in $1, or any when $1 is null)
-- has at least one active case manager with a free place, and they were not tried already against the
-- same referral row, rules ($3, the policy version) and case managers of their region (queue_tries,
-- migration 0104: a case manager whose eligibility changed in a transaction the try could not see
-- makes it worth trying again). Most urgent, then oldest, first.
WITH open_regions AS (
    SELECT DISTINCT r.code
    FROM case_managers c CROSS JOIN LATERAL unnest(c.regions) AS r(code)
    WHERE c.status = 'active' AND c.active_count < c.capacity
      AND ($1::text[] IS NULL OR r.code = ANY ($1::text[]))
)
SELECT q.id
FROM referrals q JOIN open_regions o ON o.code = q.region
WHERE q.status = 'unroutable' AND q.unroutable_reason = 'no_eligible_case_manager'
  AND NOT EXISTS (
      SELECT 1 FROM queue_tries t
      WHERE t.referral_id = q.id AND t.referral_xmin = q.xmin AND t.policy_version = $3
        AND NOT EXISTS (SELECT 1 FROM case_managers c
                        WHERE q.region = ANY (c.regions)
                          AND NOT pg_visible_in_snapshot(c.supply_xid, t.tried_snapshot)))
ORDER BY (q.urgency = 'urgent') DESC, q.received_at, q.id
LIMIT $2
