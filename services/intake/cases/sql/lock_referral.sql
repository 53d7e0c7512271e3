-- The referral, locked for a change; row-level security decides whether the caller sees it at all.
SELECT * FROM referrals WHERE id = $1 FOR UPDATE
