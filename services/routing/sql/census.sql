-- Why a region's case managers could not take a referral, counted by the first hard filter each fails
-- (the policy's order). Used to explain a decision in a region too large to name everyone.
-- $1 region, $2 language, $3 specialism mask that excludes the youth, $4 excluded ids,
-- $5 the referral's need mask, $6 needs to cover at least.
SELECT count(*) AS members,
       count(*) FILTER (WHERE reason = 'excluded') AS excluded,
       count(*) FILTER (WHERE reason = 'status') AS status,
       count(*) FILTER (WHERE reason = 'capacity') AS capacity,
       count(*) FILTER (WHERE reason = 'language') AS language,
       count(*) FILTER (WHERE reason = 'age') AS age,
       count(*) FILTER (WHERE reason = 'needs') AS needs,
       count(*) FILTER (WHERE reason IS NULL) AS eligible
FROM (
    SELECT CASE
        WHEN staff_id = ANY ($4::uuid[]) THEN 'excluded'
        WHEN status <> 'active' THEN 'status'
        WHEN active_count >= capacity THEN 'capacity'
        WHEN NOT $2::text = ANY (languages) THEN 'language'
        WHEN specialism_mask & $3::int <> 0 THEN 'age'
        WHEN bit_count((need_mask & $5::int)::bit(16)) < $6::int THEN 'needs'
    END AS reason
    FROM case_managers
    WHERE regions @> ARRAY[$1::text]
) AS r
