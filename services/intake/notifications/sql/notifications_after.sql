-- A recipient's notifications after a cursor. The 10-second look-back also catches rows whose ids
-- were allocated earlier but committed later than the cursor (the stream skips ids it has sent).
SELECT id, kind, referral_id, assignment_id, created_at, read_at, data
FROM notifications
WHERE recipient_id = $1 AND channel = 'inapp'
  AND (id > $2 OR created_at > now() - interval '10 seconds')
ORDER BY id
LIMIT 200
