-- Into the supervisor queue, keeping how long it has already waited there.
UPDATE referrals SET status = 'unroutable', unroutable_reason = $2, updated_at = now(),
    queued_at = CASE WHEN status = 'unroutable' THEN coalesce(queued_at, now()) ELSE now() END
WHERE id = $1
