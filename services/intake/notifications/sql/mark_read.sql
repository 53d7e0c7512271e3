-- Marks the recipient's own notification read (once; later marks keep the first time).
UPDATE notifications SET read_at = coalesce(read_at, now())
WHERE id = $1 AND recipient_id = $2
RETURNING 1
