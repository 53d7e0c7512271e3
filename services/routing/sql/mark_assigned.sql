-- The referral is offered to someone: out of the queue, whatever it was waiting for.
UPDATE referrals SET status = 'assigned', assigned_at = $2, updated_at = $2, unroutable_reason = NULL, queued_at = NULL
WHERE id = $1
