-- The consent a referral was made under.
SELECT method, scope, obtained_at, expires_at, withdrawn_at FROM consents WHERE referral_id = $1
