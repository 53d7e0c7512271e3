-- The processed-message claim ($1 consumer, $2 event id) and the referral's row lock ($3) in one round
-- trip. `claimed` is false when an earlier delivery of this event already committed its effect (skip
-- and ack); no row means there is no such referral (and the claim is rolled back with the rest).
-- `previous_offers` (as previous_offers.sql) rides along: one statement fewer per routed event.
WITH claim AS (
    INSERT INTO processed_messages (consumer, event_id) VALUES ($1, $2)
    ON CONFLICT DO NOTHING RETURNING 1
)
SELECT r.*, EXISTS (SELECT 1 FROM claim) AS claimed,
       ARRAY(SELECT a.case_manager_id FROM assignments a
             WHERE a.referral_id = r.id AND a.state IN ('declined', 'expired')) AS previous_offers
FROM referrals r
WHERE r.id = $3
FOR NO KEY UPDATE OF r
