-- Seconds from an offer to its acceptance over offers made since $2 (null: ever), as time_to_assignment.sql.
WITH d AS (
    SELECT extract(epoch FROM responded_at - offered_at)::float8 AS s FROM assignments
    WHERE state = 'accepted' AND responded_at IS NOT NULL AND ($2::timestamptz IS NULL OR offered_at >= $2)
)
SELECT count(*)::int AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY s) AS p90,
       coalesce((SELECT array_agg(c ORDER BY b) FROM (
            SELECT width_bucket(s, $1::float8[]) AS b, count(*)::int AS c FROM d GROUP BY 1) h), '{}') AS counts,
       coalesce((SELECT array_agg(b ORDER BY b) FROM (
            SELECT DISTINCT width_bucket(s, $1::float8[]) AS b FROM d) h), '{}') AS buckets
FROM d
