-- A recipient's in-app notifications, newest first ($2: unread only).
SELECT id, kind, referral_id, assignment_id, created_at, read_at, data
FROM notifications
WHERE recipient_id = $1 AND channel = 'inapp' AND (NOT $2 OR read_at IS NULL)
ORDER BY id DESC
LIMIT $3
