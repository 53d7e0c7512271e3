-- The referral, if the caller's identity may see it (row-level security decides).
SELECT id, received_at, region, age_years FROM referrals WHERE id = $1
