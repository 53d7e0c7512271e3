-- One in-app notification per event, recipient and channel, however often the event is delivered.
INSERT INTO notifications (recipient_id, channel, kind, event_id, referral_id, assignment_id, data)
VALUES ($1, 'inapp', $2, $3, $4, $5, $6)
ON CONFLICT (event_id, recipient_id, channel) DO NOTHING
