-- Every coded outcome observation (one per referral, follow-up point and measure) and its day.
SELECT referral_id, point, measure, value, observed_on
FROM outcomes
