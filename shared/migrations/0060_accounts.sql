-- Accounts (issue 14): partner users, one-time passwords, deactivation that takes effect at once (every
-- request re-reads the account), deactivated partners, and the case manager roster's "inactive" meaning
-- the same as deactivating the account.

-- Partner users act for one partner. The role check is rewritten from the catalog (as in 0040), so roles
-- other migrations added are kept.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
        WHERE conrelid = 'staff'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%''evaluator''%'
    LOOP
        IF c.def NOT LIKE '%''partner_user''%' THEN
            EXECUTE format('ALTER TABLE staff DROP CONSTRAINT %I', c.conname);
            EXECUTE format('ALTER TABLE staff ADD CONSTRAINT %I %s', c.conname,
                           replace(c.def, '''evaluator''::text', '''evaluator''::text, ''partner_user''::text'));
        END IF;
    END LOOP;
END $$;

ALTER TABLE staff
    ADD COLUMN partner_id uuid REFERENCES partners (id),
    -- A generated (one-time) password: the account may only change it until it does.
    ADD COLUMN password_change_required boolean NOT NULL DEFAULT false,
    -- Tokens carry the version they were issued under; a reset, deactivation or password change bumps
    -- it, so every earlier token and web session stops working at once.
    ADD COLUMN token_version integer NOT NULL DEFAULT 0,
    ADD CONSTRAINT staff_partner_user_partner CHECK (role <> 'partner_user' OR partner_id IS NOT NULL);
CREATE INDEX staff_partner ON staff (partner_id) WHERE partner_id IS NOT NULL;

ALTER TABLE partners ADD COLUMN deactivated_at timestamptz;

-- The account behind a staff token, checked on every request: no row when it is deactivated, its
-- partner is, or the token predates the last reset. One autocommit statement like API-key
-- authentication (0009), acting as the system for the lookup alone.
CREATE FUNCTION refnet_authenticate_staff(sid uuid, version integer)
RETURNS TABLE (role text, region text, partner_id uuid, password_change_required boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
AS $$
    SELECT s.role, s.region, s.partner_id, s.password_change_required
    FROM staff s LEFT JOIN partners p ON p.id = s.partner_id
    WHERE s.id = sid AND s.deactivated_at IS NULL AND s.token_version = version AND p.deactivated_at IS NULL
$$;
REVOKE ALL ON FUNCTION refnet_authenticate_staff(uuid, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refnet_authenticate_staff(uuid, integer) TO refnet_app;

-- A deactivated partner's keys stop working at once (the keys themselves stay, revocable as before).
CREATE OR REPLACE FUNCTION refnet_authenticate_api_key(hash bytea) RETURNS TABLE (key_id uuid, partner_id uuid)
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
AS $$
    WITH k AS (
        SELECT k.id, k.partner_id FROM api_keys k JOIN partners p ON p.id = k.partner_id
        WHERE k.key_hash = hash AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
          AND p.deactivated_at IS NULL
    ), t AS (
        UPDATE api_keys SET last_used_at = now()
        WHERE id = (SELECT id FROM k) AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')
    )
    SELECT id, partner_id FROM k
$$;

-- The roster's "inactive" is the account's deactivation (and back): whoever may set the status (an
-- admin, a region's supervisor, the CSV import) offboards the person, without being allowed to write
-- staff rows themselves.
CREATE FUNCTION refnet_case_manager_active_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
AS $$
BEGIN
    IF NEW.status = 'inactive' THEN
        UPDATE staff SET deactivated_at = now(), token_version = token_version + 1
        WHERE id = NEW.staff_id AND deactivated_at IS NULL;
    ELSIF TG_OP = 'UPDATE' AND OLD.status = 'inactive' THEN
        UPDATE staff SET deactivated_at = NULL WHERE id = NEW.staff_id AND deactivated_at IS NOT NULL;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER case_manager_active_sync AFTER INSERT OR UPDATE OF status ON case_managers
    FOR EACH ROW EXECUTE FUNCTION refnet_case_manager_active_sync();
