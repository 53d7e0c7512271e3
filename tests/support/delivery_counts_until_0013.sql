-- TEMPORARY test-only stand-in for refnet_delivery_counts() until migration 0013 (core branch) is merged:
-- notify's counters and queue gauges per channel, as services/notify/metrics.py delivery_counts reads
-- them. Security invoker: the caller's row-level security applies, as it did to the two reads it replaces.
CREATE FUNCTION refnet_delivery_counts() RETURNS TABLE (channel text, metric text, n bigint)
LANGUAGE sql STABLE AS $$
    SELECT c.channel, c.metric, sum(c.value)::bigint FROM delivery_counters c GROUP BY c.channel, c.metric
    UNION ALL
    SELECT d.channel, CASE WHEN d.state = 'dead' THEN 'dead' ELSE 'pending' END, count(*)
    FROM deliveries d WHERE d.state IN ('pending', 'failed', 'dead') GROUP BY 1, 2
$$;
