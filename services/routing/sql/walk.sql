-- One page of the candidate walk: a region's single-region case managers who pass every hard filter
-- and have no specialism that fits the referral, least loaded first (ties to the lower id), in the
-- order of case_managers_walk. Narrow rows: engine._walk scores them with policy.base_score.
-- $1 region, $2 language, $3 specialism mask that excludes the youth (age band), $4 excluded ids,
-- $5 the referral's need mask, $6 needs to cover at least, $7 specialism mask that fits, $8 limit.
SELECT staff_id, active_count, capacity, need_mask, specialism_mask
FROM case_managers
WHERE region_key = $1::text AND status = 'active' AND active_count < capacity
  AND $2::text = ANY (languages) AND specialism_mask & $3::int = 0 AND specialism_mask & $7::int = 0
  AND staff_id <> ALL ($4::uuid[]) AND bit_count((need_mask & $5::int)::bit(16)) >= $6::int
ORDER BY active_count::float8 / nullif(capacity, 0), staff_id
LIMIT $8
