-- Whether a partner has an active webhook endpoint subscribed to an event type, in one autocommit
-- statement: notify asks this for every status change of every referral, and most partners have no
-- endpoint, so it must not cost a transaction (BEGIN + identity, the query, COMMIT) each time.
-- SECURITY DEFINER with the system identity for the call only (restored on exit); answers yes/no
-- about ids the caller already holds, nothing else.
CREATE FUNCTION refnet_has_webhook_subscriber(partner uuid, event_type text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
AS $$
    SELECT EXISTS (
        SELECT 1 FROM webhook_endpoints
        WHERE partner_id = partner AND state = 'active' AND event_type = ANY (events)
    )
$$;
REVOKE ALL ON FUNCTION refnet_has_webhook_subscriber(uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refnet_has_webhook_subscriber(uuid, text) TO refnet_app;
