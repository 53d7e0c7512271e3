-- What a fresh stream sends first: the newest unread in-app notifications.
SELECT id, kind, referral_id, assignment_id, created_at, read_at, data
FROM notifications
WHERE recipient_id = $1 AND channel = 'inapp' AND read_at IS NULL
ORDER BY id DESC
LIMIT 100
