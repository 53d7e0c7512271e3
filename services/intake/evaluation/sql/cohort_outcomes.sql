-- Every coded outcome observation (one per referral, follow-up point and measure).
SELECT referral_id, point, measure, value
FROM outcomes
