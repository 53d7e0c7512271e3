-- Case lifecycle and programme evaluation: the status machine enforced and recorded by the database,
-- first contact and closing, coded interventions, scheduled follow-ups and outcomes, the youth's
-- do-not-contact preference, and where a dataset came from (synthetic demo data says so).

ALTER TABLE referrals
    ADD COLUMN engaged_at timestamptz,
    ADD COLUMN close_reason text CHECK (close_reason IN
        ('goals_met', 'youth_declined_services', 'lost_contact', 'moved_out_of_area', 'transferred', 'aged_out', 'other')),
    -- The youth asked not to be contacted: every channel that could lead to contact honours it.
    ADD COLUMN do_not_contact boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT referrals_closed_has_reason CHECK (status <> 'closed' OR close_reason IS NOT NULL);

-- The legal status changes, row for row the TRANSITIONS table of shared/lifecycle.py (a unit test keeps
-- them equal). The API checks first and answers 409; this is the wall behind it for every writer.
CREATE TABLE referral_status_transitions (
    from_status     text NOT NULL,
    to_status       text NOT NULL,
    PRIMARY KEY (from_status, to_status)
);
INSERT INTO referral_status_transitions (from_status, to_status) VALUES
    ('received', 'assigned'), ('received', 'unroutable'), ('received', 'withdrawn'),
    ('assigned', 'accepted'), ('assigned', 'unroutable'), ('assigned', 'withdrawn'),
    ('unroutable', 'assigned'), ('unroutable', 'withdrawn'),
    ('accepted', 'engaged'), ('accepted', 'closed'), ('accepted', 'withdrawn'),
    ('engaged', 'closed');

-- Every status change of every referral, whoever made it (intake, routing, sweeps, operators): written
-- by the trigger below only. Actor ids are staff, partner or '' (system); the reason is a code.
CREATE TABLE referral_transitions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    referral_id     uuid NOT NULL REFERENCES referrals (id),
    from_status     text NOT NULL,
    to_status       text NOT NULL,
    actor_role      text NOT NULL,
    actor_id        text NOT NULL DEFAULT '',
    reason          text,
    at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX referral_transitions_referral ON referral_transitions (referral_id, id);

-- SECURITY DEFINER: the service role may not write referral_transitions itself (no INSERT grant), so
-- the history cannot be forged or skipped by application code; only this trigger appends to it.
CREATE FUNCTION refnet_referral_transition() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM referral_status_transitions
                   WHERE from_status = OLD.status AND to_status = NEW.status) THEN
        RAISE EXCEPTION 'illegal referral status transition % -> % (referral %)', OLD.status, NEW.status, OLD.id
            USING ERRCODE = 'check_violation', HINT = 'see shared/lifecycle.py TRANSITIONS';
    END IF;
    INSERT INTO referral_transitions (referral_id, from_status, to_status, actor_role, actor_id, reason)
    VALUES (NEW.id, OLD.status, NEW.status, refnet_role(), coalesce(current_setting('app.actor_id', true), ''),
            CASE NEW.status
                WHEN 'unroutable' THEN NEW.unroutable_reason
                WHEN 'closed' THEN NEW.close_reason
                ELSE nullif(current_setting('app.transition_reason', true), '')
            END);
    RETURN NEW;
END $$;
REVOKE ALL ON FUNCTION refnet_referral_transition() FROM PUBLIC;
CREATE TRIGGER referrals_transition AFTER UPDATE OF status ON referrals
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION refnet_referral_transition();

-- The case manager who accepted the referral, whatever its status since (engaged, closed): case records
-- are written by them. (refnet_cm_has_referral also admits a case manager who merely holds an offer.)
CREATE FUNCTION refnet_cm_owns_case(rid uuid) RETURNS boolean LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp AS
$$ SELECT EXISTS (SELECT 1 FROM assignments a WHERE a.referral_id = rid AND a.case_manager_id = refnet_actor()
                  AND a.state = 'accepted') $$;
REVOKE ALL ON FUNCTION refnet_cm_owns_case(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refnet_cm_owns_case(uuid) TO refnet_app;

-- Coded services delivered to a youth. No free text: these rows are de-identified evaluation data.
CREATE TABLE interventions (
    id                  uuid PRIMARY KEY,
    referral_id         uuid NOT NULL REFERENCES referrals (id),
    type                text NOT NULL CHECK (type IN (
                            'housing', 'mental_health', 'medical', 'substance_use', 'legal', 'immigration',
                            'education', 'employment', 'basic_needs', 'family', 'lgbtq_affirming',
                            'peer_support', 'safety_planning', 'case_management', 'therapy', 'court_advocacy',
                            'vacatur_or_record_relief', 't_visa_or_immigration_relief', 'housing_placement',
                            'school_enrollment', 'job_training', 'mentoring')),
    delivered_on        date NOT NULL,
    -- A partner organisation, or NULL for a provider outside the network ("external").
    provider_partner_id uuid REFERENCES partners (id),
    duration            interval CHECK (duration > interval '0'),
    recorded_by         uuid NOT NULL REFERENCES staff (id),
    recorded_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX interventions_referral ON interventions (referral_id, delivered_on);

-- Follow-up schedule, created at first contact: intake, 3, 6, 12 and 24 months after it. A periodic
-- job reminds the case manager once per row (reminder_event_id is the followup.due event's id).
CREATE TABLE followups (
    referral_id         uuid NOT NULL REFERENCES referrals (id),
    point               text NOT NULL CHECK (point IN ('intake', 'm3', 'm6', 'm12', 'm24')),
    due_on              date NOT NULL,
    reminded_at         timestamptz,
    reminder_event_id   uuid UNIQUE,
    completed_at        timestamptz,
    PRIMARY KEY (referral_id, point)
);
CREATE INDEX followups_due ON followups (due_on) WHERE reminded_at IS NULL AND completed_at IS NULL;

-- One coded observation per youth, follow-up point and measure; the date observed and its source.
CREATE TABLE outcomes (
    id              uuid PRIMARY KEY,
    referral_id     uuid NOT NULL REFERENCES referrals (id),
    point           text NOT NULL CHECK (point IN ('intake', 'm3', 'm6', 'm12', 'm24')),
    measure         text NOT NULL CHECK (measure IN
                        ('re_arrest', 'return_to_exploitation', 'housing_stability', 'in_school_or_work', 'safety')),
    value           text NOT NULL,
    observed_on     date NOT NULL,
    source          text NOT NULL CHECK (source IN ('youth_self_report', 'case_manager_observation',
                        'partner_report', 'justice_system_record', 'caregiver_report', 'other_agency_record')),
    recorded_by     uuid NOT NULL REFERENCES staff (id),
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (referral_id, point, measure),
    CHECK (CASE measure
        WHEN 're_arrest' THEN value IN ('yes', 'no', 'unknown')
        WHEN 'return_to_exploitation' THEN value IN ('yes', 'no', 'unknown')
        WHEN 'housing_stability' THEN value IN ('stable', 'unstable', 'homeless', 'unknown')
        WHEN 'in_school_or_work' THEN value IN ('school', 'work', 'both', 'neither', 'unknown')
        WHEN 'safety' THEN value IN ('safe', 'at_risk', 'unsafe', 'unknown')
    END)
);

-- What a reader of the evaluation must know about the data itself (e.g. "synthetic, backdated").
CREATE TABLE dataset_provenance (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL,
    note            text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Reference data and the trigger-written history are not the service role's to change.
REVOKE INSERT, UPDATE, DELETE ON referral_status_transitions, referral_transitions FROM refnet_app;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['referral_status_transitions', 'referral_transitions', 'interventions', 'followups',
                             'outcomes', 'dataset_provenance']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY system_all ON %I USING (refnet_role() = ''system'') WITH CHECK (refnet_role() = ''system'')', t);
    END LOOP;
    -- De-identified case records: evaluators and admins read them (never the PII tables).
    FOREACH t IN ARRAY ARRAY['referral_transitions', 'interventions', 'followups', 'outcomes', 'dataset_provenance']
    LOOP
        EXECUTE format('CREATE POLICY evaluator_read ON %I FOR SELECT USING (refnet_role() = ''evaluator'')', t);
        EXECUTE format('CREATE POLICY admin_read ON %I FOR SELECT USING (refnet_role() = ''admin'')', t);
    END LOOP;
    -- Case records: the case manager who has the referral reads them, supervisors their region's.
    FOREACH t IN ARRAY ARRAY['referral_transitions', 'interventions', 'followups', 'outcomes']
    LOOP
        EXECUTE format('CREATE POLICY case_manager_read ON %I FOR SELECT'
                       ' USING (refnet_role() = ''case_manager'' AND refnet_cm_has_referral(referral_id))', t);
        EXECUTE format('CREATE POLICY supervisor_region ON %I FOR SELECT'
                       ' USING (refnet_role() = ''supervisor'' AND refnet_referral_region(referral_id) = refnet_region())', t);
    END LOOP;
    -- ... and only the case manager who accepted it writes them.
    FOREACH t IN ARRAY ARRAY['interventions', 'outcomes', 'followups']
    LOOP
        EXECUTE format('CREATE POLICY case_manager_insert ON %I FOR INSERT'
                       ' WITH CHECK (refnet_role() = ''case_manager'' AND refnet_cm_owns_case(referral_id))', t);
    END LOOP;
END $$;

-- Anyone may read the status machine (it is code, not data; the trigger reads it as the table owner).
CREATE POLICY read ON referral_status_transitions FOR SELECT USING (true);
-- The trigger function runs as the migrating role, which FORCE subjects to RLS unless it is a superuser;
-- this lets it append. The service role cannot use it: it has no INSERT privilege on the table.
CREATE POLICY trigger_append ON referral_transitions FOR INSERT WITH CHECK (true);
-- The owning case manager marks a follow-up done when an outcome is recorded for it.
CREATE POLICY case_manager_update ON followups FOR UPDATE
    USING (refnet_role() = 'case_manager' AND refnet_cm_owns_case(referral_id))
    WITH CHECK (refnet_role() = 'case_manager' AND refnet_cm_owns_case(referral_id));
