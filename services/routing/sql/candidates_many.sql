-- The parts of candidates.sql that do not depend on the walks, for a whole routing batch in one
-- statement (its first round, read before the batch writes anything): per referral (`i`, its 1-based
-- position in the arrays) 'multi' and 'continuity' exactly as in candidates.sql; per region the batch
-- names, 'member': up to $10 of its case managers by id (`i` NULL, `region` set). One element per
-- referral in $1 region, $2 language, $3 excluding specialisms, $4 excluded ids (comma-joined), $5 need
-- mask, $6 needs to cover, $7 fitting specialisms, $8 youth key (NULL: none), $9 the referral. Each
-- part is a LATERAL subquery fenced by OFFSET 0: the same index probes per referral as candidates.sql,
-- whatever the statistics say. When the region is small enough to name everyone, the walks' best are
-- among its members: engine.gather then needs no statement of its own.
WITH f AS MATERIALIZED (
    SELECT *
    FROM unnest($1::text[], $2::text[], $3::int[], $4::text[], $5::int[], $6::int[], $7::int[], $8::bytea[],
                $9::uuid[])
        WITH ORDINALITY AS f (region, language, excluding, excluded, mask, min_covered, fits, youth_key, referral, i)
)
SELECT f.i, NULL::text AS region, 'multi' AS source, c.*
FROM f CROSS JOIN LATERAL (
    SELECT staff_id, regions, needs, languages, specialisms, capacity, active_count, status
    FROM case_managers
    WHERE cardinality(regions) > 1 AND status = 'active' AND active_count < capacity
      AND f.fits <> 0 AND specialism_mask & f.fits <> 0
      AND regions @> ARRAY[f.region] AND f.language = ANY (languages) AND specialism_mask & f.excluding = 0
      AND staff_id <> ALL (string_to_array(f.excluded, ',')::uuid[])
      AND bit_count((need_mask & f.mask)::bit(16)) >= f.min_covered
    OFFSET 0
) AS c
UNION ALL
SELECT f.i, NULL::text, 'continuity', c.*
FROM f CROSS JOIN LATERAL (
    SELECT staff_id, regions, needs, languages, specialisms, capacity, active_count, status
    FROM case_managers
    -- Driven from the youth: its other referrals (by key, or linked in youth_matches), then each one's
    -- accepted assignment by referral. Each step is a LATERAL subquery fenced by OFFSET 0, so no plan
    -- can start from assignments instead: a generic plan made while no assignment was accepted read
    -- every live assignment for every referral (bench at 400/s: 14,000 rows x 43, 468 ms a batch).
    WHERE staff_id IN (
        SELECT a.case_manager_id
        FROM ((SELECT r.id FROM referrals r
               WHERE r.youth_key = f.youth_key AND r.id <> f.referral
                 -- A youth whose PII was destroyed (consent withdrawn, retention) is not linked.
                 AND r.pii_shredded_at IS NULL
               OFFSET 0)
              UNION
              (SELECT r.id
               FROM ((SELECT m.other_referral_id FROM youth_matches m
                      WHERE m.referral_id = f.referral AND m.status <> 'dismissed' OFFSET 0)
                     UNION ALL
                     (SELECT m.referral_id FROM youth_matches m
                      WHERE m.other_referral_id = f.referral AND m.status <> 'dismissed' OFFSET 0)) AS linked (id)
               CROSS JOIN LATERAL (SELECT r.id FROM referrals r
                                   WHERE r.id = linked.id AND r.pii_shredded_at IS NULL OFFSET 0) AS r)
             ) AS prior
        CROSS JOIN LATERAL (SELECT a.case_manager_id FROM assignments a
                            WHERE a.referral_id = prior.id AND a.state = 'accepted' OFFSET 0) AS a)
    OFFSET 0
) AS c
UNION ALL
SELECT NULL::bigint, g.region, 'member', c.*
FROM (SELECT DISTINCT region FROM f) AS g CROSS JOIN LATERAL (
    SELECT staff_id, regions, needs, languages, specialisms, capacity, active_count, status
    FROM case_managers
    WHERE regions @> ARRAY[g.region]
    ORDER BY staff_id
    LIMIT $10
) AS c
