-- The same in-app notification to every admin, once per event.
INSERT INTO notifications (recipient_id, channel, kind, event_id, data)
SELECT id, 'inapp', $1, $2, $3 FROM staff WHERE role = 'admin' AND deactivated_at IS NULL
ON CONFLICT (event_id, recipient_id, channel) DO NOTHING
