-- The services recorded for a referral, in the order delivered.
SELECT * FROM interventions WHERE referral_id = $1 ORDER BY delivered_on, recorded_at
