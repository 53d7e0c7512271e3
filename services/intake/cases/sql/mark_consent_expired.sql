-- An expired consent counts as withdrawn by expiry.
UPDATE consents SET withdrawn_at = now(), withdrawn_by = 'expiry' WHERE referral_id = $1
