-- The same walk over the region's specialists whose specialism fits the referral ($7), in the order of
-- case_managers_specialists_walk. Parameters as in walk.sql.
SELECT staff_id, active_count, capacity, need_mask, specialism_mask
FROM case_managers
WHERE region_key = $1::text AND specialism_mask <> 0 AND status = 'active' AND active_count < capacity
  AND $2::text = ANY (languages) AND specialism_mask & $3::int = 0 AND specialism_mask & $7::int <> 0
  AND staff_id <> ALL ($4::uuid[]) AND bit_count((need_mask & $5::int)::bit(16)) >= $6::int
ORDER BY active_count::float8 / nullif(capacity, 0), staff_id
LIMIT $8
