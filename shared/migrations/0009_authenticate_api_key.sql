-- Partner API-key authentication in one autocommit statement: look the key up by its hash and touch
-- last_used_at at most once a minute. Before this it was a transaction of its own (BEGIN + identity,
-- the lookup, COMMIT) on every partner request.
-- SECURITY DEFINER with the system identity set only for the call (the SET clause restores it on
-- exit), so it works whether or not the owner is subject to row-level security, and the caller's
-- own identity is never changed. It reveals nothing without the key itself (only its hash matches).
CREATE FUNCTION refnet_authenticate_api_key(hash bytea) RETURNS TABLE (key_id uuid, partner_id uuid)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
AS $$
    WITH k AS (
        SELECT id, partner_id FROM api_keys
        WHERE key_hash = hash AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
    ), t AS (
        UPDATE api_keys SET last_used_at = now()
        WHERE id = (SELECT id FROM k) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
    )
    SELECT id, partner_id FROM k
$$;
REVOKE ALL ON FUNCTION refnet_authenticate_api_key(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refnet_authenticate_api_key(bytea) TO refnet_app;
