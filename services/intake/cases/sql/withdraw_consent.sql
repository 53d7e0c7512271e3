-- Records the withdrawal, once ($2: the role that recorded it). Nothing returned: already withdrawn.
UPDATE consents SET withdrawn_at = now(), withdrawn_by = $2
WHERE referral_id = $1 AND withdrawn_at IS NULL
RETURNING withdrawn_at
