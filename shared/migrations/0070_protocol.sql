-- Child-protection protocol (issue 18): each referral's steps (from the protocol file, created with the
-- referral), who completed them and when, and the one overdue escalation per step. The step's note and
-- reference are sealed with the referral's data key (destroyed with it); the rest is de-identified.
CREATE TABLE protocol_steps (
    referral_id         uuid NOT NULL REFERENCES referrals (id),
    -- The submitting partner: the creation policy checks it without a join.
    partner_id          uuid NOT NULL REFERENCES partners (id),
    code                text NOT NULL CHECK (code ~ '^[a-z][a-z0-9_]{0,63}$'),
    position            integer NOT NULL,
    protocol_version    text NOT NULL,
    -- The step's rules as the file said when the referral was received (a replaced file changes none).
    roles               text[] NOT NULL,
    clock_from          text NOT NULL,
    clock_minutes       integer,
    reference_required  boolean NOT NULL DEFAULT false,
    outcomes            text[] NOT NULL DEFAULT '{}',
    escalate_to         text[] NOT NULL DEFAULT '{}',
    due_at              timestamptz,
    completed_at        timestamptz,
    completed_by        uuid REFERENCES staff (id),
    completed_role      text,
    -- A coded result (e.g. the medical exam accepted / declined / not_applicable), never free text.
    outcome             text,
    has_reference       boolean NOT NULL DEFAULT false,
    has_note            boolean NOT NULL DEFAULT false,
    -- {"reference", "note"} sealed with the referral's data key (AES-GCM, the referral id and code bound).
    sealed_nonce        bytea,
    sealed_text         bytea,
    escalated_at        timestamptz,
    escalation_event_id uuid UNIQUE,
    PRIMARY KEY (referral_id, code),
    CHECK ((completed_at IS NULL) = (completed_by IS NULL))
);
-- The overdue sweep reads only open steps with a clock that nobody was told of yet.
CREATE INDEX protocol_steps_overdue ON protocol_steps (due_at)
    WHERE completed_at IS NULL AND escalated_at IS NULL AND due_at IS NOT NULL;

ALTER TABLE protocol_steps ENABLE ROW LEVEL SECURITY;
ALTER TABLE protocol_steps FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON protocol_steps
    USING ((SELECT refnet_role()) = 'system') WITH CHECK ((SELECT refnet_role()) = 'system');
-- Created with the referral, in the submitter's transaction; partners never read them back.
CREATE POLICY partner_insert ON protocol_steps FOR INSERT
    WITH CHECK ((SELECT refnet_role()) IN ('partner', 'intake_staff') AND partner_id = (SELECT refnet_partner()));
-- The case manager who has the referral, the region's supervisors and admins read and complete them.
CREATE POLICY case_manager_assigned ON protocol_steps
    USING ((SELECT refnet_role()) = 'case_manager' AND refnet_cm_has_referral(referral_id))
    WITH CHECK ((SELECT refnet_role()) = 'case_manager' AND refnet_cm_has_referral(referral_id));
-- An out-of-area referral (no region) is every supervisor's, as in 0030.
CREATE POLICY supervisor_region ON protocol_steps
    USING ((SELECT refnet_role()) = 'supervisor'
           AND coalesce(refnet_referral_region(referral_id), (SELECT refnet_region())) = (SELECT refnet_region()))
    WITH CHECK ((SELECT refnet_role()) = 'supervisor'
                AND coalesce(refnet_referral_region(referral_id), (SELECT refnet_region())) = (SELECT refnet_region()));
CREATE POLICY admin_all ON protocol_steps
    USING ((SELECT refnet_role()) = 'admin') WITH CHECK ((SELECT refnet_role()) = 'admin');
-- Compliance and timing are de-identified evaluation data (the sealed columns are unreadable to them).
CREATE POLICY evaluator_read ON protocol_steps FOR SELECT USING ((SELECT refnet_role()) = 'evaluator');

-- The wrapped data key to seal a step's note with, for whoever may complete steps of the referral: a
-- supervisor or admin may not read the youth's details (referral_keys), yet must be able to write a note.
-- The key never leaves intake unwrapped, and intake only encrypts with it here.
CREATE FUNCTION refnet_protocol_key(rid uuid) RETURNS TABLE (key_id text, wrapped_key bytea)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS $$
    SELECT k.key_id, k.wrapped_key FROM referral_keys k
    WHERE k.referral_id = rid
      AND ((refnet_role() = 'case_manager' AND refnet_cm_has_referral(rid))
           OR (refnet_role() = 'supervisor' AND coalesce(refnet_referral_region(rid), refnet_region()) = refnet_region())
           OR refnet_role() = 'admin')
$$;
REVOKE ALL ON FUNCTION refnet_protocol_key(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refnet_protocol_key(uuid) TO refnet_app;
