-- The candidate set for one referral, as full rows, tagged by source:
--   top         the best of the walks (walk*.sql), by id ($2);
--   multi       the few who serve several regions, this one among them, with a specialism that fits ($6),
--               eligible (the hard filters as in walk.sql: $7 language, $8 excluding specialisms,
--               $9 excluded ids, $10 need mask, $11 needs to cover at least);
--   continuity  case managers who accepted an earlier referral of the same youth (pseudonymous key $3),
--               or a referral staff linked to this one or intake found probably the same youth
--               (youth_matches, not dismissed);
--   member      when $5 > 0, up to $5 of the region's case managers, eligible or not, to name them all.
-- $1 region, $4 the referral.
SELECT 'top' AS source, staff_id, regions, needs, languages, specialisms, capacity, active_count, status
FROM case_managers WHERE staff_id = ANY ($2::uuid[])
UNION ALL
SELECT 'multi', staff_id, regions, needs, languages, specialisms, capacity, active_count, status
FROM case_managers
WHERE cardinality(regions) > 1 AND status = 'active' AND active_count < capacity
  AND $6::int <> 0  -- constant per call: nothing to read when no specialism fits
  AND specialism_mask & $6::int <> 0
  AND regions @> ARRAY[$1::text] AND $7::text = ANY (languages) AND specialism_mask & $8::int = 0
  AND staff_id <> ALL ($9::uuid[]) AND bit_count((need_mask & $10::int)::bit(16)) >= $11::int
UNION ALL
SELECT 'continuity', staff_id, regions, needs, languages, specialisms, capacity, active_count, status
FROM case_managers
-- Driven from the youth, never from assignments (see candidates_many.sql): each step fenced by OFFSET 0.
WHERE staff_id IN (
    SELECT a.case_manager_id
    FROM ((SELECT r.id FROM referrals r
           WHERE r.youth_key = $3::bytea AND r.id <> $4::uuid
             -- A youth whose PII was destroyed (consent withdrawn, retention) is not linked.
             AND r.pii_shredded_at IS NULL
           OFFSET 0)
          UNION
          (SELECT r.id
           FROM ((SELECT m.other_referral_id FROM youth_matches m
                  WHERE m.referral_id = $4::uuid AND m.status <> 'dismissed' OFFSET 0)
                 UNION ALL
                 (SELECT m.referral_id FROM youth_matches m
                  WHERE m.other_referral_id = $4::uuid AND m.status <> 'dismissed' OFFSET 0)) AS linked (id)
           CROSS JOIN LATERAL (SELECT r.id FROM referrals r
                               WHERE r.id = linked.id AND r.pii_shredded_at IS NULL OFFSET 0) AS r)
         ) AS prior
    CROSS JOIN LATERAL (SELECT a.case_manager_id FROM assignments a
                        WHERE a.referral_id = prior.id AND a.state = 'accepted' OFFSET 0) AS a)
UNION ALL
(SELECT 'member', staff_id, regions, needs, languages, specialisms, capacity, active_count, status
 FROM case_managers
 WHERE $5::int > 0 AND regions @> ARRAY[$1::text]
 ORDER BY staff_id
 LIMIT $5)
