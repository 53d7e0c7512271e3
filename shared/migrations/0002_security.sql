-- Security: a non-superuser service role subject to row-level security, per-transaction caller
-- identity (app.* settings), a hash-chained append-only audit log, consent and key bookkeeping.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'refnet_app') THEN
        -- Services log in as this role. It owns nothing, is not a superuser and cannot bypass RLS;
        -- set a password for it on servers that authenticate by password.
        CREATE ROLE refnet_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END $$;

GRANT USAGE ON SCHEMA public TO refnet_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO refnet_app;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO refnet_app;
-- Tables created by later migrations (run by the same migrating role) get the same grants.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO refnet_app;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO refnet_app;
REVOKE INSERT, UPDATE, DELETE ON schema_migrations FROM refnet_app;

-- The caller's identity, set per transaction by shared.db.transaction(). Unset means nobody:
-- every policy below then matches no row.
CREATE FUNCTION refnet_role() RETURNS text LANGUAGE sql STABLE AS
$$ SELECT coalesce(nullif(current_setting('app.role', true), ''), 'none') $$;
CREATE FUNCTION refnet_actor() RETURNS uuid LANGUAGE sql STABLE AS
$$ SELECT nullif(current_setting('app.actor_id', true), '')::uuid $$;
CREATE FUNCTION refnet_partner() RETURNS uuid LANGUAGE sql STABLE AS
$$ SELECT nullif(current_setting('app.partner_id', true), '')::uuid $$;
CREATE FUNCTION refnet_region() RETURNS text LANGUAGE sql STABLE AS
$$ SELECT nullif(current_setting('app.region', true), '') $$;
-- Break-glass: an admin's explicit, reasoned, audited PII read sets this for one transaction.
CREATE FUNCTION refnet_break_glass() RETURNS boolean LANGUAGE sql STABLE AS
$$ SELECT coalesce(current_setting('app.break_glass', true), '') = 'on' AND refnet_role() = 'admin' $$;

-- A case manager "has" a referral while an offer to them is open or they accepted it.
-- SECURITY DEFINER so the check itself is not filtered by the assignments policy.
CREATE FUNCTION refnet_cm_has_referral(rid uuid) RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp AS
$$ SELECT EXISTS (SELECT 1 FROM assignments a WHERE a.referral_id = rid AND a.case_manager_id = refnet_actor()
                  AND a.state IN ('offered', 'accepted')) $$;
CREATE FUNCTION refnet_referral_region(rid uuid) RETURNS text LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp AS
$$ SELECT region FROM referrals WHERE id = rid $$;
REVOKE ALL ON FUNCTION refnet_cm_has_referral(uuid), refnet_referral_region(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refnet_cm_has_referral(uuid), refnet_referral_region(uuid) TO refnet_app;

-- PII-bearing rows carry the partner id so a policy can check them without a join (a join would
-- not see a referral inserted by the same statement).
ALTER TABLE referral_keys ADD COLUMN partner_id uuid REFERENCES partners (id);
UPDATE referral_keys k SET partner_id = r.partner_id FROM referrals r WHERE r.id = k.referral_id;
ALTER TABLE referral_keys ALTER COLUMN partner_id SET NOT NULL;
ALTER TABLE referral_keys ADD COLUMN rewrapped_at timestamptz;

ALTER TABLE consents ADD COLUMN withdrawn_by text;
ALTER TABLE referrals ADD COLUMN pii_shredded_at timestamptz;
ALTER TABLE api_keys ADD COLUMN label text NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN revoked_reason text;
-- Rotation overlap: the old key keeps working until expires_at while the partner switches.
ALTER TABLE api_keys ADD COLUMN expires_at timestamptz;

-- Audit: append-only for the service role. Rows are written in the transaction of the audited act;
-- a single sealer (shared/audit.py) then numbers them and chains their hashes in order.
CREATE TABLE audit_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_role      text NOT NULL,
    actor_id        text NOT NULL DEFAULT '',
    partner_id      text NOT NULL DEFAULT '',
    action          text NOT NULL,
    target_type     text NOT NULL DEFAULT '',
    target_id       text NOT NULL DEFAULT '',
    detail          jsonb NOT NULL DEFAULT '{}',
    seq             bigint UNIQUE,
    prev_hash       bytea,
    hash            bytea
);
CREATE INDEX audit_log_unsealed ON audit_log (id) WHERE seq IS NULL;
CREATE INDEX audit_log_target ON audit_log (target_type, target_id);
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM refnet_app;
GRANT UPDATE (seq, prev_hash, hash) ON audit_log TO refnet_app;

-- Even a column grant must not let a sealed row change, nor content change at sealing.
CREATE FUNCTION refnet_audit_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'audit_log is append-only';
    END IF;
    IF OLD.seq IS NOT NULL THEN
        RAISE EXCEPTION 'audit_log row % is sealed', OLD.id;
    END IF;
    IF (NEW.at, NEW.actor_role, NEW.actor_id, NEW.partner_id, NEW.action, NEW.target_type, NEW.target_id, NEW.detail)
       IS DISTINCT FROM
       (OLD.at, OLD.actor_role, OLD.actor_id, OLD.partner_id, OLD.action, OLD.target_type, OLD.target_id, OLD.detail) THEN
        RAISE EXCEPTION 'audit_log content is immutable';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_log_guard BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refnet_audit_guard();

-- Row-level security. FORCE applies it to the table owner too; superusers still bypass it, which is
-- why the services connect as refnet_app. 'system' is the identity of workers and authentication.
DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['partners', 'api_keys', 'staff', 'case_managers', 'referrals', 'referral_keys',
                             'referral_pii', 'consents', 'idempotency_keys', 'assignments', 'routing_decisions',
                             'notifications', 'processed_messages', 'outbox', 'audit_log']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY system_all ON %I USING (refnet_role() = ''system'') WITH CHECK (refnet_role() = ''system'')', t);
    END LOOP;
END $$;

CREATE POLICY admin_all ON partners USING (refnet_role() = 'admin') WITH CHECK (refnet_role() = 'admin');
CREATE POLICY own_partner ON partners FOR SELECT USING (refnet_role() = 'partner' AND id = refnet_partner());
CREATE POLICY staff_read ON partners FOR SELECT USING (refnet_role() IN ('case_manager', 'supervisor', 'evaluator'));

CREATE POLICY admin_all ON api_keys USING (refnet_role() = 'admin') WITH CHECK (refnet_role() = 'admin');
CREATE POLICY own_keys ON api_keys FOR SELECT USING (refnet_role() = 'partner' AND partner_id = refnet_partner());

CREATE POLICY admin_all ON staff USING (refnet_role() = 'admin') WITH CHECK (refnet_role() = 'admin');
CREATE POLICY self ON staff FOR SELECT USING (id = refnet_actor());
CREATE POLICY supervisor_region ON staff FOR SELECT USING (refnet_role() = 'supervisor' AND region = refnet_region());

CREATE POLICY admin_all ON case_managers USING (refnet_role() = 'admin') WITH CHECK (refnet_role() = 'admin');
CREATE POLICY self ON case_managers USING (refnet_role() = 'case_manager' AND staff_id = refnet_actor())
    WITH CHECK (refnet_role() = 'case_manager' AND staff_id = refnet_actor());
CREATE POLICY supervisor_region ON case_managers
    USING (refnet_role() = 'supervisor' AND refnet_region() = ANY (regions))
    WITH CHECK (refnet_role() = 'supervisor' AND refnet_region() = ANY (regions));

-- referrals hold routing facts and coded attributes only (no PII): evaluators may read them.
CREATE POLICY admin_all ON referrals USING (refnet_role() = 'admin') WITH CHECK (refnet_role() = 'admin');
CREATE POLICY evaluator_read ON referrals FOR SELECT USING (refnet_role() = 'evaluator');
CREATE POLICY partner_own ON referrals USING (refnet_role() = 'partner' AND partner_id = refnet_partner())
    WITH CHECK (refnet_role() = 'partner' AND partner_id = refnet_partner());
CREATE POLICY case_manager_assigned ON referrals
    USING (refnet_role() = 'case_manager' AND refnet_cm_has_referral(id))
    WITH CHECK (refnet_role() = 'case_manager' AND refnet_cm_has_referral(id));
CREATE POLICY supervisor_region ON referrals USING (refnet_role() = 'supervisor' AND region = refnet_region())
    WITH CHECK (refnet_role() = 'supervisor' AND region = refnet_region());

-- PII: the submitting partner (to write it), the case manager who has the referral, and an admin
-- only under break-glass. Supervisors and evaluators never.
CREATE POLICY partner_own ON referral_pii USING (refnet_role() = 'partner' AND partner_id = refnet_partner())
    WITH CHECK (refnet_role() = 'partner' AND partner_id = refnet_partner());
CREATE POLICY case_manager_assigned ON referral_pii FOR SELECT
    USING (refnet_role() = 'case_manager' AND refnet_cm_has_referral(referral_id));
CREATE POLICY break_glass ON referral_pii FOR SELECT USING (refnet_break_glass());
CREATE POLICY partner_own ON referral_keys USING (refnet_role() = 'partner' AND partner_id = refnet_partner())
    WITH CHECK (refnet_role() = 'partner' AND partner_id = refnet_partner());
CREATE POLICY case_manager_assigned ON referral_keys
    USING (refnet_role() = 'case_manager' AND refnet_cm_has_referral(referral_id));
CREATE POLICY break_glass ON referral_keys FOR SELECT USING (refnet_break_glass());

CREATE POLICY admin_read ON consents FOR SELECT USING (refnet_role() = 'admin');
CREATE POLICY partner_own ON consents USING (refnet_role() = 'partner' AND partner_id = refnet_partner())
    WITH CHECK (refnet_role() = 'partner' AND partner_id = refnet_partner());
CREATE POLICY case_manager_assigned ON consents
    USING (refnet_role() = 'case_manager' AND refnet_cm_has_referral(referral_id))
    WITH CHECK (refnet_role() = 'case_manager' AND refnet_cm_has_referral(referral_id));

CREATE POLICY partner_own ON idempotency_keys USING (refnet_role() = 'partner' AND partner_id = refnet_partner())
    WITH CHECK (refnet_role() = 'partner' AND partner_id = refnet_partner());

CREATE POLICY admin_all ON assignments USING (refnet_role() = 'admin') WITH CHECK (refnet_role() = 'admin');
CREATE POLICY case_manager_own ON assignments
    USING (refnet_role() = 'case_manager' AND case_manager_id = refnet_actor())
    WITH CHECK (refnet_role() = 'case_manager' AND case_manager_id = refnet_actor());
CREATE POLICY supervisor_region ON assignments
    USING (refnet_role() = 'supervisor' AND refnet_referral_region(referral_id) = refnet_region())
    WITH CHECK (refnet_role() = 'supervisor' AND refnet_referral_region(referral_id) = refnet_region());

CREATE POLICY admin_read ON routing_decisions FOR SELECT USING (refnet_role() = 'admin');
CREATE POLICY supervisor_region ON routing_decisions FOR SELECT
    USING (refnet_role() = 'supervisor' AND refnet_referral_region(referral_id) = refnet_region());

CREATE POLICY recipient ON notifications USING (recipient_id = refnet_actor())
    WITH CHECK (recipient_id = refnet_actor());

-- Anyone acting may append events and audit rows; only the system reads, relays and seals them.
CREATE POLICY append ON outbox FOR INSERT WITH CHECK (refnet_role() <> 'none');
CREATE POLICY append ON audit_log FOR INSERT WITH CHECK (refnet_role() <> 'none');
CREATE POLICY admin_read ON audit_log FOR SELECT USING (refnet_role() = 'admin');
