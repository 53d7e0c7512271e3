-- The number of the next offer of a referral (1 for the first).
SELECT count(*) + 1 FROM assignments WHERE referral_id = $1
