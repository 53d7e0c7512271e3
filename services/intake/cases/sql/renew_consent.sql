-- A renewal becomes the referral's consent: the sweep shreds on the new expiry only.
UPDATE consents SET method = $2, scope = $3, obtained_at = $4, expires_at = $5, renewed_at = now()
WHERE referral_id = $1 AND withdrawn_at IS NULL
RETURNING method, scope, obtained_at, expires_at, withdrawn_at, renewed_at
