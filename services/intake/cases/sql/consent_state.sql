-- The referral's current consent and how often it was renewed (row-level security decides who reads it).
SELECT c.method, c.scope, c.obtained_at, c.expires_at, c.withdrawn_at, c.renewed_at,
       (SELECT count(*) FROM consent_renewals n WHERE n.referral_id = c.referral_id)::int AS renewals
FROM consents c WHERE c.referral_id = $1
