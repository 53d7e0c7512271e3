-- The next uncompleted step with a deadline of each of these referrals (the caller's, by row-level
-- security), for the inbox.
SELECT DISTINCT ON (referral_id) referral_id, code, due_at
FROM protocol_steps
WHERE referral_id = ANY ($1::uuid[]) AND completed_at IS NULL AND due_at IS NOT NULL
ORDER BY referral_id, due_at
