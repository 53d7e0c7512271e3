-- The renewal's record (the consents row holds only the current consent).
INSERT INTO consent_renewals (id, referral_id, method, scope, obtained_at, expires_at, previous_expires_at, recorded_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
