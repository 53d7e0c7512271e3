-- The referral whose routing is explained (row-level security decides whether the caller sees it).
SELECT id, status, region, needs, language, urgency FROM referrals WHERE id = $1
