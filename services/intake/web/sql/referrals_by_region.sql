-- Referral counts per region (null: out of area) that the caller may see.
SELECT region, count(*)::int AS n FROM referrals GROUP BY region
