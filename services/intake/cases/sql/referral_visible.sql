-- Whether the caller may see the referral (row-level security: nothing means not theirs, or absent).
SELECT 1 FROM referrals WHERE id = $1
