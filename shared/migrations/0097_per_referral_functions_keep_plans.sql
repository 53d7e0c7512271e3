-- Two SECURITY DEFINER functions every referral calls (intake's API-key check; notify's webhook-subscriber
-- check, twice per status change) were LANGUAGE sql. Such a function is never inlined (SECURITY DEFINER,
-- SET clauses), and a non-inlined SQL function plans its query again on every call; PL/pgSQL keeps the
-- plan for the session (0096 did the same for refnet_youth_candidates). Same signatures, same results,
-- same identity switch for the call only.
CREATE OR REPLACE FUNCTION refnet_authenticate_api_key(hash bytea) RETURNS TABLE (key_id uuid, partner_id uuid)
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
AS $$
BEGIN
    RETURN QUERY
    WITH k AS (
        SELECT k.id, k.partner_id FROM api_keys k JOIN partners p ON p.id = k.partner_id
        WHERE k.key_hash = hash AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
          AND p.deactivated_at IS NULL
    ), t AS (
        UPDATE api_keys SET last_used_at = now()
        WHERE id = (SELECT k.id FROM k) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
    )
    SELECT k.id, k.partner_id FROM k;
END
$$;

CREATE OR REPLACE FUNCTION refnet_has_webhook_subscriber(partner uuid, event_type text) RETURNS boolean
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM webhook_endpoints w
        WHERE w.partner_id = partner AND w.state = 'active' AND event_type = ANY (w.events)
    );
END
$$;
