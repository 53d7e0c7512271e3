-- The first page of every walk in one round trip (walk.sql, walk_specialists.sql, walk_multi.sql, in
-- that order, each tagged): most walks end on their first page. $8 is the first page of the main walk,
-- $9 of the two small ones; the specialists' walk runs only when a specialism fits ($7 <> 0). Other
-- parameters as in walk.sql.
(SELECT 'plain' AS walk, staff_id, active_count, capacity, need_mask, specialism_mask
 FROM case_managers
 WHERE region_key = $1::text AND status = 'active' AND active_count < capacity
   AND $2::text = ANY (languages) AND specialism_mask & $3::int = 0 AND specialism_mask & $7::int = 0
   AND staff_id <> ALL ($4::uuid[]) AND bit_count((need_mask & $5::int)::bit(16)) >= $6::int
 ORDER BY active_count::float8 / nullif(capacity, 0), staff_id
 LIMIT $8)
UNION ALL
(SELECT 'specialist' AS walk, staff_id, active_count, capacity, need_mask, specialism_mask
 FROM case_managers
 WHERE region_key = $1::text AND specialism_mask <> 0 AND status = 'active' AND active_count < capacity
   AND $7::int <> 0  -- constant per call: without a fitting specialism the walk is skipped, not run
   AND $2::text = ANY (languages) AND specialism_mask & $3::int = 0 AND specialism_mask & $7::int <> 0
   AND staff_id <> ALL ($4::uuid[]) AND bit_count((need_mask & $5::int)::bit(16)) >= $6::int
 ORDER BY active_count::float8 / nullif(capacity, 0), staff_id
 LIMIT $9)
UNION ALL
(SELECT 'multi' AS walk, staff_id, active_count, capacity, need_mask, specialism_mask
 FROM case_managers
 WHERE cardinality(regions) > 1 AND status = 'active' AND active_count < capacity
   AND regions @> ARRAY[$1::text] AND $2::text = ANY (languages) AND specialism_mask & $3::int = 0
   AND staff_id <> ALL ($4::uuid[]) AND bit_count((need_mask & $5::int)::bit(16)) >= $6::int
   AND specialism_mask & $7::int = 0
 ORDER BY active_count::float8 / nullif(capacity, 0), staff_id
 LIMIT $9)
