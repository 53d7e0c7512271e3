-- Received, offered and unroutable referrals per $2 ('hour', 'day' or 'month' on the agency's calendar,
-- time zone $3) from the one holding $1 to the current one, empty ones as zeros. Buckets are counted in
-- local time, so a day is a local day across daylight saving changes.
WITH buckets AS (
    SELECT generate_series(date_trunc($2, $1::timestamptz AT TIME ZONE $3),
                           date_trunc($2, now() AT TIME ZONE $3), ('1 ' || $2)::interval) AS local),
since AS (SELECT date_trunc($2, $1::timestamptz AT TIME ZONE $3) AT TIME ZONE $3 AS t),
rec AS (SELECT date_trunc($2, received_at AT TIME ZONE $3) AS b, count(*)::int AS n FROM referrals, since
        WHERE received_at >= since.t GROUP BY 1),
asg AS (SELECT date_trunc($2, offered_at AT TIME ZONE $3) AS b, count(*)::int AS n FROM assignments, since
        WHERE offered_at >= since.t GROUP BY 1),
unr AS (SELECT date_trunc($2, decided_at AT TIME ZONE $3) AS b, count(*)::int AS n FROM routing_decisions, since
        WHERE outcome <> 'assigned' AND decided_at >= since.t GROUP BY 1)
SELECT buckets.local AT TIME ZONE $3 AS start, coalesce(rec.n, 0) AS received, coalesce(asg.n, 0) AS assigned,
       coalesce(unr.n, 0) AS unroutable
FROM buckets LEFT JOIN rec ON rec.b = buckets.local LEFT JOIN asg ON asg.b = buckets.local
LEFT JOIN unr ON unr.b = buckets.local ORDER BY buckets.local
