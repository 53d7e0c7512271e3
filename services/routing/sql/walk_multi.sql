-- The same walk over case managers who serve several regions, this one among them, without a
-- specialism that fits (those few are read whole by candidates.sql), in the order of
-- case_managers_multi_region_walk. Parameters as in walk.sql.
SELECT staff_id, active_count, capacity, need_mask, specialism_mask
FROM case_managers
WHERE cardinality(regions) > 1 AND status = 'active' AND active_count < capacity
  AND regions @> ARRAY[$1::text] AND $2::text = ANY (languages) AND specialism_mask & $3::int = 0
  AND staff_id <> ALL ($4::uuid[]) AND bit_count((need_mask & $5::int)::bit(16)) >= $6::int
  AND specialism_mask & $7::int = 0
ORDER BY active_count::float8 / nullif(capacity, 0), staff_id
LIMIT $8
