-- Referrals whose consent expired and whose PII still exists; SKIP LOCKED keeps intakes apart.
SELECT r.* FROM consents c JOIN referrals r ON r.id = c.referral_id
WHERE c.expires_at <= now() AND c.withdrawn_at IS NULL AND r.pii_shredded_at IS NULL
ORDER BY c.expires_at
LIMIT $1
FOR UPDATE OF r SKIP LOCKED
