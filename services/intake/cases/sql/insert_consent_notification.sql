-- The in-app warning of an expiring consent; one per event and recipient however often it is attempted.
INSERT INTO notifications (recipient_id, channel, kind, event_id, referral_id, data)
VALUES ($1, 'inapp', 'consent_expiring', $2, $3, $4)
ON CONFLICT (event_id, recipient_id, channel) DO NOTHING
