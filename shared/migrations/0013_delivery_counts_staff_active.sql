-- Delivery counters and queue sizes in one place, read by notify (its /metrics gauges) and by intake
-- (the admin metrics and the dead-letter page) without either importing the other's code.
--
-- Every channel and metric notify knows comes out, zero when nothing was counted yet (so a dashboard
-- sees a 0, not a gap), plus any other (channel, metric) found in the tables. attempts, delivered,
-- retried, dead_lettered and suppressed only ever grow (sharded counters summed); pending (waiting for
-- a first attempt or a retry) and dead (in the dead-letter list) are the current queue sizes.
--
-- SECURITY INVOKER (the default): the caller's row-level security applies, as it did to the queries
-- this replaces (admins and the system read it all).
CREATE FUNCTION refnet_delivery_counts() RETURNS TABLE (channel text, metric text, n bigint)
LANGUAGE sql STABLE
SET search_path = public, pg_temp
AS $$
    WITH counted AS (
        SELECT c.channel, c.metric, sum(c.value)::bigint AS n
        FROM delivery_counters c
        GROUP BY c.channel, c.metric
        UNION ALL
        SELECT d.channel, CASE WHEN d.state = 'dead' THEN 'dead' ELSE 'pending' END, count(*)
        FROM deliveries d
        WHERE d.state IN ('pending', 'failed', 'dead')
        GROUP BY 1, 2
    ),
    known AS (
        SELECT k.channel, m.metric
        FROM unnest(ARRAY['webhook', 'email']) AS k(channel)
        CROSS JOIN unnest(ARRAY['attempts', 'delivered', 'retried', 'dead_lettered', 'suppressed', 'pending',
                                'dead']) AS m(metric)
    )
    SELECT coalesce(k.channel, c.channel), coalesce(k.metric, c.metric), coalesce(c.n, 0)::bigint
    FROM known k FULL JOIN counted c ON c.channel = k.channel AND c.metric = k.metric
    ORDER BY 1, 2
$$;
REVOKE ALL ON FUNCTION refnet_delivery_counts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refnet_delivery_counts() TO refnet_app;

-- A staff member who has left keeps their row (audit, decisions and case records name them) but acts
-- no more: services asked to act on their behalf (routing's manual assignment, notify's replay)
-- re-read this and refuse. NULL while they are active.
ALTER TABLE staff ADD COLUMN deactivated_at timestamptz;
