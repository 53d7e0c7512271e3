-- The outcomes recorded for a referral.
SELECT * FROM outcomes WHERE referral_id = $1 ORDER BY observed_on, recorded_at, measure
