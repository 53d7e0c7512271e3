-- event_referral.sql for a whole batch of events in one statement: $1 the referrals they name, $2 the
-- assignments (NULL where none), same order; one row per event whose referral exists, `i` its 1-based
-- position. Each lookup is a LATERAL subquery kept apart by OFFSET 0, so it stays two primary-key
-- probes per event whatever the statistics say (a flat join can turn into a scan of a table the
-- planner thinks is small).
SELECT e.i, x.*
FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS e (rid, aid, i)
CROSS JOIN LATERAL (
    SELECT r.partner_id, r.status, r.region, r.urgency,
           a.referral_id AS assignment_referral_id, a.case_manager_id AS assignment_case_manager_id,
           a.state AS assignment_state
    FROM referrals r
    LEFT JOIN assignments a ON a.id = e.aid
    WHERE r.id = e.rid
    OFFSET 0
) AS x
