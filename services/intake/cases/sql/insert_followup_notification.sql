-- The in-app reminder of a due follow-up; one per event and recipient however often it is attempted.
INSERT INTO notifications (recipient_id, channel, kind, event_id, referral_id, data)
VALUES ($1, 'inapp', 'followup_due', $2, $3, $4)
ON CONFLICT (event_id, recipient_id, channel) DO NOTHING
