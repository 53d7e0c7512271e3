-- The consumer's claim of an event and the event's in-app notifications in one statement (one round
-- trip instead of two): notifications are written only when this delivery of the event made the claim.
-- Used where the fan-out before it only reads. $1 consumer, $2 event; per notification: $3 recipient,
-- $4 kind, $5 referral, $6 assignment, $7 data (JSON text). One row back: claimed or not.
WITH claim AS (
    INSERT INTO processed_messages (consumer, event_id) VALUES ($1, $2)
    ON CONFLICT DO NOTHING
    RETURNING 1
), n AS (
    INSERT INTO notifications (recipient_id, channel, kind, event_id, referral_id, assignment_id, data)
    SELECT u.recipient, 'inapp', u.kind, $2, u.referral, u.assignment, u.data::jsonb
    FROM claim, unnest($3::uuid[], $4::text[], $5::uuid[], $6::uuid[], $7::text[])
        AS u(recipient, kind, referral, assignment, data)
    ON CONFLICT (event_id, recipient_id, channel) DO NOTHING
)
SELECT EXISTS (SELECT 1 FROM claim) AS claimed
