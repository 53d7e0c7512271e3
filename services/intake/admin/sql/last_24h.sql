-- Received, offered and unroutable referrals per hour over the last 24 hours (empty hours as zeros).
WITH hours AS (
    SELECT generate_series(date_trunc('hour', now()) - interval '23 hours', date_trunc('hour', now()),
                           interval '1 hour') AS start),
rec AS (SELECT date_trunc('hour', received_at) AS h, count(*)::int AS n FROM referrals
        WHERE received_at >= date_trunc('hour', now()) - interval '23 hours' GROUP BY 1),
asg AS (SELECT date_trunc('hour', offered_at) AS h, count(*)::int AS n FROM assignments
        WHERE offered_at >= date_trunc('hour', now()) - interval '23 hours' GROUP BY 1),
unr AS (SELECT date_trunc('hour', decided_at) AS h, count(*)::int AS n FROM routing_decisions
        WHERE outcome <> 'assigned' AND decided_at >= date_trunc('hour', now()) - interval '23 hours' GROUP BY 1)
SELECT hours.start, coalesce(rec.n, 0) AS received, coalesce(asg.n, 0) AS assigned, coalesce(unr.n, 0) AS unroutable
FROM hours LEFT JOIN rec ON rec.h = hours.start LEFT JOIN asg ON asg.h = hours.start
LEFT JOIN unr ON unr.h = hours.start ORDER BY hours.start
