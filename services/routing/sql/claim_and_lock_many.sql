-- A routing batch's claims and referral row locks in one statement (claim_and_lock.sql for many events):
-- $1 consumer, $2 event ids, $3 their referral ids (same order). One row per event whose referral
-- exists, with `ord` its 1-based position in $2; `claimed` as in claim_and_lock.sql. The referrals are
-- locked in id order (the sort sits under the row locks), so two batches never lock one another's
-- referrals in opposite orders. A referral named by two events comes back twice (the caller runs the
-- second event alone, after the others).
WITH claim AS (
    INSERT INTO processed_messages (consumer, event_id)
    SELECT $1, e FROM unnest($2::uuid[]) AS e
    ON CONFLICT DO NOTHING RETURNING event_id
)
SELECT r.*, e.ord, EXISTS (SELECT 1 FROM claim c WHERE c.event_id = e.event_id) AS claimed,
       ARRAY(SELECT a.case_manager_id FROM assignments a
             WHERE a.referral_id = r.id AND a.state IN ('declined', 'expired')) AS previous_offers
FROM unnest($2::uuid[], $3::uuid[]) WITH ORDINALITY AS e (event_id, referral_id, ord)
JOIN referrals r ON r.id = e.referral_id
ORDER BY r.id, e.ord
FOR UPDATE OF r
