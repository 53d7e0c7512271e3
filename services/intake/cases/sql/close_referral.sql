-- Closing: the reason code ($2) and its outcome category ($3).
UPDATE referrals
SET status = 'closed', close_reason = $2, outcome = $3, closed_at = now(), updated_at = now()
WHERE id = $1
RETURNING *
