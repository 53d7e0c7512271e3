-- How many interventions of each type each referral received.
SELECT referral_id, type, count(*)::int AS n
FROM interventions
GROUP BY referral_id, type
