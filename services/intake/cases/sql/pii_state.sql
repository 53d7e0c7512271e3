-- Whether the referral is visible to the caller (row-level security) and whether its PII still exists.
SELECT id, pii_shredded_at FROM referrals WHERE id = $1
