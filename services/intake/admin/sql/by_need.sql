-- Referrals received since $1 (null: ever) per need code (a referral counts once for each of its needs),
-- how many were offered to someone, and p50/p90 seconds from receipt to the first offer.
SELECT n.need, count(*)::int AS n, count(r.assigned_at)::int AS assigned,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM r.assigned_at - r.received_at)) AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM r.assigned_at - r.received_at)) AS p90
FROM referrals r CROSS JOIN LATERAL unnest(r.needs) AS n(need)
WHERE $1::timestamptz IS NULL OR r.received_at >= $1
GROUP BY n.need
