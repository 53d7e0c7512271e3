-- The newest notification id of a recipient (0 if none): where a stream or a page starts from.
SELECT coalesce(max(id), 0) FROM notifications WHERE recipient_id = $1
