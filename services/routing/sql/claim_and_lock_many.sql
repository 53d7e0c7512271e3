-- A routing batch's claims and referral row locks in one statement (claim_and_lock.sql for many events):
-- $1 consumer, $2 event ids, $3 their referral ids (same order). One row per event whose referral
-- exists, with `ord` its 1-based position in $2; `claimed` as in claim_and_lock.sql. The referrals are
-- locked in id order (the events sorted first, then each referral looked up and locked in that order),
-- so two batches never lock one another's referrals in opposite orders. A referral named by two events
-- comes back twice (the caller runs the second event alone, after the others).
-- The lookup is a LATERAL subquery with its own lock so the plan is one primary-key probe per event
-- whatever the statistics say: the flat join with ORDER BY r.id let a planner that thought the table
-- nearly empty walk all of referrals_pkey in order for every batch (3,800 rows scanned to lock 63, 1.2
-- to 1.8 ms of the database per referral in the benchmark). NO KEY UPDATE, as the status update
-- itself takes: it does not block intake's foreign-key checks (KEY SHARE) on these referrals.
WITH claim AS (
    INSERT INTO processed_messages (consumer, event_id)
    SELECT $1, e FROM unnest($2::uuid[]) AS e
    ON CONFLICT DO NOTHING RETURNING event_id
)
SELECT r.*, e.ord, EXISTS (SELECT 1 FROM claim c WHERE c.event_id = e.event_id) AS claimed,
       ARRAY(SELECT a.case_manager_id FROM assignments a
             WHERE a.referral_id = r.id AND a.state IN ('declined', 'expired')) AS previous_offers
FROM (
    SELECT u.event_id, u.referral_id, u.ord
    FROM unnest($2::uuid[], $3::uuid[]) WITH ORDINALITY AS u (event_id, referral_id, ord)
    ORDER BY u.referral_id, u.ord
) AS e
CROSS JOIN LATERAL (
    SELECT * FROM referrals WHERE id = e.referral_id FOR NO KEY UPDATE
) AS r
ORDER BY e.referral_id, e.ord
