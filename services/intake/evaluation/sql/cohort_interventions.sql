-- How many interventions of each type each referral of the cohort ($1, from cohort_referrals) received,
-- and the first day one was delivered.
SELECT referral_id, type, count(*)::int AS n, min(delivered_on) AS first_on
FROM interventions
WHERE referral_id = ANY ($1::uuid[])
GROUP BY referral_id, type
