-- Staff link or dismiss a match of referral $2 (row-level security: theirs to see); $3 the verdict.
UPDATE youth_matches
SET status = $3, decided_by = $4, decided_at = now()
WHERE id = $1 AND (referral_id = $2 OR other_referral_id = $2)
RETURNING id, referral_id, other_referral_id, status
