-- The referral of an accepted offer becomes accepted (only from assigned: a withdrawal may have won).
UPDATE referrals SET status = 'accepted', accepted_at = now(), updated_at = now()
WHERE id = $1 AND status = 'assigned'
RETURNING *
