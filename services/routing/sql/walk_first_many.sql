-- walk_first.sql for a whole routing batch in one statement: the first page of every walk of every
-- referral, each row with `i`, the 1-based position of its referral in the arrays. One element per
-- referral in $1 region, $2 language, $3 excluding specialisms, $4 excluded case managers (their ids
-- joined by commas: arrays of arrays must be rectangular), $5 need mask, $6 needs to cover, $7 fitting
-- specialisms; $8 the main walk's first page, $9 the two small walks'. Filters as in walk.sql. Each
-- referral's walks are a LATERAL subquery: the same ordered index walks with a LIMIT as walk_first.sql.
SELECT f.i, w.walk, w.staff_id, w.active_count, w.capacity, w.need_mask, w.specialism_mask
FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::int[], $6::int[], $7::int[])
     WITH ORDINALITY AS f (region, language, excluding, excluded, mask, min_covered, fits, i)
CROSS JOIN LATERAL (
    (SELECT 'plain' AS walk, staff_id, active_count, capacity, need_mask, specialism_mask
     FROM case_managers
     WHERE region_key = f.region AND status = 'active' AND active_count < capacity
       AND f.language = ANY (languages) AND specialism_mask & f.excluding = 0 AND specialism_mask & f.fits = 0
       AND staff_id <> ALL (string_to_array(f.excluded, ',')::uuid[])
       AND bit_count((need_mask & f.mask)::bit(16)) >= f.min_covered
     ORDER BY active_count::float8 / nullif(capacity, 0), staff_id
     LIMIT $8)
    UNION ALL
    (SELECT 'specialist' AS walk, staff_id, active_count, capacity, need_mask, specialism_mask
     FROM case_managers
     WHERE region_key = f.region AND specialism_mask <> 0 AND status = 'active' AND active_count < capacity
       AND f.fits <> 0  -- constant per referral: without a fitting specialism the walk is skipped
       AND f.language = ANY (languages) AND specialism_mask & f.excluding = 0 AND specialism_mask & f.fits <> 0
       AND staff_id <> ALL (string_to_array(f.excluded, ',')::uuid[])
       AND bit_count((need_mask & f.mask)::bit(16)) >= f.min_covered
     ORDER BY active_count::float8 / nullif(capacity, 0), staff_id
     LIMIT $9)
    UNION ALL
    (SELECT 'multi' AS walk, staff_id, active_count, capacity, need_mask, specialism_mask
     FROM case_managers
     WHERE cardinality(regions) > 1 AND status = 'active' AND active_count < capacity
       AND regions @> ARRAY[f.region] AND f.language = ANY (languages) AND specialism_mask & f.excluding = 0
       AND staff_id <> ALL (string_to_array(f.excluded, ',')::uuid[])
       AND bit_count((need_mask & f.mask)::bit(16)) >= f.min_covered
       AND specialism_mask & f.fits = 0
     ORDER BY active_count::float8 / nullif(capacity, 0), staff_id
     LIMIT $9)
) AS w
-- Spelled out, not left to the plan: each walk's rows in its own order (gather reads them in order).
ORDER BY f.i, w.walk, w.active_count::float8 / nullif(w.capacity, 0), w.staff_id
