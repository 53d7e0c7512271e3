-- claim_and_notify.sql for several events at once (a batch's offers): $1 consumer, $2 the events;
-- per notification: $3 its event, $4 recipient, $5 kind, $6 referral, $7 assignment, $8 data (JSON
-- text). Notifications are written only for the events this statement claimed; the claimed events
-- come back.
WITH claim AS (
    INSERT INTO processed_messages (consumer, event_id)
    SELECT $1, e FROM unnest($2::uuid[]) AS e
    ON CONFLICT DO NOTHING
    RETURNING event_id
), n AS (
    INSERT INTO notifications (recipient_id, channel, kind, event_id, referral_id, assignment_id, data)
    SELECT u.recipient, 'inapp', u.kind, u.event, u.referral, u.assignment, u.data::jsonb
    FROM unnest($3::uuid[], $4::uuid[], $5::text[], $6::uuid[], $7::uuid[], $8::text[])
        AS u(event, recipient, kind, referral, assignment, data)
    WHERE u.event IN (SELECT event_id FROM claim)
    ON CONFLICT (event_id, recipient_id, channel) DO NOTHING
)
SELECT event_id FROM claim
