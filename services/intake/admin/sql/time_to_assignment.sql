-- Seconds from receipt to the first offer over referrals received since $2 (null: ever): count, p50, p90,
-- and per width_bucket of the edges $1 the count (bucket numbers in `buckets`, counts in `counts`).
WITH d AS (
    SELECT extract(epoch FROM assigned_at - received_at)::float8 AS s FROM referrals
    WHERE assigned_at IS NOT NULL AND ($2::timestamptz IS NULL OR received_at >= $2)
)
SELECT count(*)::int AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY s) AS p90,
       coalesce((SELECT array_agg(c ORDER BY b) FROM (
            SELECT width_bucket(s, $1::float8[]) AS b, count(*)::int AS c FROM d GROUP BY 1) h), '{}') AS counts,
       coalesce((SELECT array_agg(b ORDER BY b) FROM (
            SELECT DISTINCT width_bucket(s, $1::float8[]) AS b FROM d) h), '{}') AS buckets
FROM d
