-- How many interventions of each type each referral received, and the first day one was delivered.
SELECT referral_id, type, count(*)::int AS n, min(delivered_on) AS first_on
FROM interventions
GROUP BY referral_id, type
