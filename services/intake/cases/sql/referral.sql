-- The referral as it is now (in the caller's transaction, after a change).
SELECT * FROM referrals WHERE id = $1
