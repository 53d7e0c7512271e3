-- Which of these staff members asked for email notifications (in-app is always on).
SELECT id FROM staff WHERE id = any($1::uuid[]) AND email_notifications AND deactivated_at IS NULL
