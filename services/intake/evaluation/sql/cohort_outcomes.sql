-- Every coded outcome observation (one per referral, follow-up point and measure) of the cohort's
-- referrals ($1, from cohort_referrals) and its day.
SELECT referral_id, point, measure, value, observed_on
FROM outcomes
WHERE referral_id = ANY ($1::uuid[])
