-- Whether the referral's data key is gone (shredded), as a referral.withdrawn event claims.
SELECT NOT EXISTS (SELECT 1 FROM referral_keys WHERE referral_id = $1)
