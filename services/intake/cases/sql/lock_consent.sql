-- The referral's current consent, locked for a renewal (row-level security: the case manager's own).
SELECT c.method, c.scope, c.obtained_at, c.expires_at, c.withdrawn_at, c.renewed_at, r.status, r.pii_shredded_at
FROM consents c JOIN referrals r ON r.id = c.referral_id
WHERE c.referral_id = $1
FOR UPDATE OF c
