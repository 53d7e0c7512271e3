-- When the first referral the caller may see was received (null: none yet).
SELECT min(received_at) FROM referrals
