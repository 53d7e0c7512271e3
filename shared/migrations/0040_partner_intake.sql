-- Every partner can refer (issue 17): the coordinating agency's own intake staff, partners managing their
-- own API keys, consent renewals and their reminders, keyed blind indexes that find one youth referred
-- twice (and staff's verdicts on those matches), and polling of FHIR Tasks by last change.

-- The coordinating agency's intake staff (hotline, walk-in, self-referral) are a role of their own. The
-- role check is rewritten from the catalog, so roles other migrations added (whatever their number and
-- merge order) are kept.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN
        SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
        WHERE conrelid = 'staff'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%''evaluator''%'
    LOOP
        IF c.def NOT LIKE '%''intake_staff''%' THEN
            EXECUTE format('ALTER TABLE staff DROP CONSTRAINT %I', c.conname);
            EXECUTE format('ALTER TABLE staff ADD CONSTRAINT %I %s', c.conname,
                           replace(c.def, '''evaluator''::text', '''evaluator''::text, ''intake_staff''::text'));
        END IF;
    END LOOP;
END $$;

-- The agency itself is the "partner" of the referrals its own intake takes: one row of this kind, made
-- at the first such referral (an empty database stays empty: `refnet up` seeds the demo on it).
CREATE UNIQUE INDEX partners_one_agency ON partners (kind) WHERE kind = 'coordinating_agency';

-- Intake staff act for the agency (app.partner_id is the agency's row): they write its referrals as a
-- partner writes its own, and read their status, never the youth's details afterwards.
CREATE POLICY intake_staff_own ON referrals
    USING ((SELECT refnet_role()) = 'intake_staff' AND partner_id = (SELECT refnet_partner()))
    WITH CHECK ((SELECT refnet_role()) = 'intake_staff' AND partner_id = (SELECT refnet_partner()));
CREATE POLICY intake_staff_insert ON referral_keys FOR INSERT
    WITH CHECK ((SELECT refnet_role()) = 'intake_staff' AND partner_id = (SELECT refnet_partner()));
CREATE POLICY intake_staff_insert ON referral_pii FOR INSERT
    WITH CHECK ((SELECT refnet_role()) = 'intake_staff' AND partner_id = (SELECT refnet_partner()));
CREATE POLICY intake_staff_insert ON consents FOR INSERT
    WITH CHECK ((SELECT refnet_role()) = 'intake_staff' AND partner_id = (SELECT refnet_partner()));
CREATE POLICY intake_staff_own ON idempotency_keys
    USING ((SELECT refnet_role()) = 'intake_staff' AND partner_id = (SELECT refnet_partner()))
    WITH CHECK ((SELECT refnet_role()) = 'intake_staff' AND partner_id = (SELECT refnet_partner()));

-- Partners (their users, or a key) issue, rotate and revoke their own API keys from the web app.
CREATE POLICY partner_issue ON api_keys FOR INSERT
    WITH CHECK ((SELECT refnet_role()) = 'partner' AND partner_id = (SELECT refnet_partner()));
CREATE POLICY partner_change ON api_keys FOR UPDATE
    USING ((SELECT refnet_role()) = 'partner' AND partner_id = (SELECT refnet_partner()))
    WITH CHECK ((SELECT refnet_role()) = 'partner' AND partner_id = (SELECT refnet_partner()));

-- Consent over two years: a renewal replaces the current consent (the consents row) and is kept here;
-- the case manager is warned 30 and 7 days before an expiry, once per lead and expiry date.
ALTER TABLE consents ADD COLUMN renewed_at timestamptz;
CREATE INDEX consents_expiring ON consents (expires_at) WHERE withdrawn_at IS NULL;

CREATE TABLE consent_renewals (
    id                  uuid PRIMARY KEY,
    referral_id         uuid NOT NULL REFERENCES referrals (id),
    method              text NOT NULL CHECK (method IN ('written', 'electronic', 'verbal')),
    scope               text[] NOT NULL,
    obtained_at         timestamptz NOT NULL,
    expires_at          timestamptz NOT NULL CHECK (expires_at > obtained_at),
    previous_expires_at timestamptz NOT NULL,
    recorded_by         uuid NOT NULL REFERENCES staff (id),
    recorded_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_renewals_referral ON consent_renewals (referral_id, recorded_at);

CREATE TABLE consent_reminders (
    referral_id     uuid NOT NULL REFERENCES referrals (id),
    lead_days       integer NOT NULL CHECK (lead_days > 0),
    expires_at      timestamptz NOT NULL,
    -- The consent.expiring event this reminder went out as (NULL: a shorter lead was due at once and
    -- went out instead).
    event_id        uuid UNIQUE,
    case_manager_id uuid REFERENCES staff (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (referral_id, lead_days, expires_at)
);

-- One youth across referrals. Keyed blind indexes (HMAC under a server key, one domain per kind) of the
-- youth's normalised details, computed at intake from what the partner sent: matching never decrypts
-- the sealed PII. Kinds: exact (name + date of birth: the youth key), dob, phone (last 7 digits),
-- first / last (phonetic codes of the names), first_tri (trigrams of the first name, for similarity).
CREATE TABLE youth_tokens (
    referral_id     uuid NOT NULL REFERENCES referrals (id),
    kind            text NOT NULL CHECK (kind IN ('exact', 'dob', 'phone', 'first', 'last', 'first_tri')),
    token           bytea NOT NULL
);
CREATE INDEX youth_tokens_token ON youth_tokens (token);
CREATE INDEX youth_tokens_referral ON youth_tokens (referral_id);

-- A new referral's youth is probably the youth of an earlier referral: staff link or dismiss it. Linked
-- and suggested matches count for routing continuity; dismissed ones do not.
CREATE TABLE youth_matches (
    id                  uuid PRIMARY KEY,
    referral_id         uuid NOT NULL REFERENCES referrals (id),
    other_referral_id   uuid NOT NULL REFERENCES referrals (id),
    score               real NOT NULL,
    reasons             text[] NOT NULL,
    status              text NOT NULL DEFAULT 'suggested' CHECK (status IN ('suggested', 'linked', 'dismissed')),
    found_at            timestamptz NOT NULL DEFAULT now(),
    decided_by          uuid REFERENCES staff (id),
    decided_at          timestamptz,
    UNIQUE (referral_id, other_referral_id),
    CHECK (referral_id <> other_referral_id)
);
CREATE INDEX youth_matches_other ON youth_matches (other_referral_id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['consent_renewals', 'consent_reminders', 'youth_tokens', 'youth_matches']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY system_all ON %I USING ((SELECT refnet_role()) = ''system'') WITH CHECK ((SELECT refnet_role()) = ''system'')', t);
    END LOOP;
END $$;

CREATE POLICY case_manager_insert ON consent_renewals FOR INSERT
    WITH CHECK ((SELECT refnet_role()) = 'case_manager' AND recorded_by = (SELECT refnet_actor())
                AND refnet_cm_owns_case(referral_id));
CREATE POLICY case_manager_read ON consent_renewals FOR SELECT
    USING ((SELECT refnet_role()) = 'case_manager' AND refnet_cm_has_referral(referral_id));
CREATE POLICY supervisor_region ON consent_renewals FOR SELECT
    USING ((SELECT refnet_role()) = 'supervisor' AND refnet_referral_region(referral_id) = (SELECT refnet_region()));
CREATE POLICY admin_read ON consent_renewals FOR SELECT USING ((SELECT refnet_role()) = 'admin');

-- Nobody but the system reads the blind indexes; the referrer writes its own referral's at intake.
CREATE POLICY referrer_insert ON youth_tokens FOR INSERT
    WITH CHECK ((SELECT refnet_role()) IN ('partner', 'intake_staff')
                AND EXISTS (SELECT 1 FROM referrals r WHERE r.id = referral_id AND r.partner_id = (SELECT refnet_partner())));

-- Matches are staff's: partners (and the agency's intake desk) only record them at intake, never read
-- them, so no partner learns that someone else referred the same youth.
CREATE POLICY referrer_insert ON youth_matches FOR INSERT
    WITH CHECK ((SELECT refnet_role()) IN ('partner', 'intake_staff')
                AND EXISTS (SELECT 1 FROM referrals r WHERE r.id = referral_id AND r.partner_id = (SELECT refnet_partner())));
CREATE POLICY admin_all ON youth_matches
    USING ((SELECT refnet_role()) = 'admin') WITH CHECK ((SELECT refnet_role()) = 'admin');
CREATE POLICY case_manager_either ON youth_matches
    USING ((SELECT refnet_role()) = 'case_manager'
           AND (refnet_cm_has_referral(referral_id) OR refnet_cm_has_referral(other_referral_id)))
    WITH CHECK ((SELECT refnet_role()) = 'case_manager'
                AND (refnet_cm_has_referral(referral_id) OR refnet_cm_has_referral(other_referral_id)));
CREATE POLICY supervisor_region ON youth_matches
    USING ((SELECT refnet_role()) = 'supervisor'
           AND (refnet_referral_region(referral_id) = (SELECT refnet_region())
                OR refnet_referral_region(other_referral_id) = (SELECT refnet_region())))
    WITH CHECK ((SELECT refnet_role()) = 'supervisor'
                AND (refnet_referral_region(referral_id) = (SELECT refnet_region())
                     OR refnet_referral_region(other_referral_id) = (SELECT refnet_region())));

-- The candidates for a new referral's youth: earlier referrals sharing an exact key, a date of birth or
-- a phone token with it (the blocking keys), with which token kinds they share and how many first-name
-- trigrams. Run as the system (the referrer may not read other partners' tokens); the tokens are HMACs,
-- useless to anyone without the server's key. $1 must be a referral of the caller's partner.
CREATE FUNCTION refnet_youth_candidates(rid uuid, kinds text[], tokens bytea[])
RETURNS TABLE (other uuid, shared text[], shared_tri integer, their_tri integer)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
AS $$
    WITH mine AS (
        SELECT u.k, u.t FROM unnest(kinds, tokens) AS u(k, t)
        WHERE EXISTS (SELECT 1 FROM referrals r WHERE r.id = rid AND r.partner_id = refnet_partner())
    ), blocked AS (
        SELECT DISTINCT y.referral_id FROM youth_tokens y JOIN mine m ON m.t = y.token AND m.k = y.kind
        WHERE m.k IN ('exact', 'dob', 'phone') AND y.referral_id <> rid
        LIMIT 500
    )
    SELECT b.referral_id,
           coalesce(array_agg(DISTINCT y.kind) FILTER (
               WHERE y.kind <> 'first_tri' AND EXISTS (SELECT 1 FROM mine m WHERE m.k = y.kind AND m.t = y.token)),
               '{}'),
           (count(*) FILTER (
               WHERE y.kind = 'first_tri' AND EXISTS (SELECT 1 FROM mine m WHERE m.k = 'first_tri' AND m.t = y.token)))::int,
           (count(*) FILTER (WHERE y.kind = 'first_tri'))::int
    FROM blocked b JOIN youth_tokens y ON y.referral_id = b.referral_id
    GROUP BY b.referral_id
$$;

-- The matches of one referral as staff see them: the other referral's status, region and who holds it.
-- Authorised from the database, not from the caller's role setting: an admin, a supervisor of the
-- referral's region, or a case manager with an open offer or the case.
CREATE FUNCTION refnet_youth_matches_of(rid uuid)
RETURNS TABLE (match_id uuid, other uuid, other_status text, other_region text, other_received_at timestamptz,
               holder text, score real, reasons text[], status text, found_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
AS $$
    WITH me AS (SELECT s.id, s.role, s.region FROM staff s WHERE s.id = refnet_actor()),
    allowed AS (
        SELECT 1 FROM me, referrals r WHERE r.id = rid AND (
            me.role = 'admin'
            OR (me.role = 'supervisor' AND me.region = r.region)
            OR (me.role = 'case_manager' AND EXISTS (
                SELECT 1 FROM assignments a WHERE a.referral_id = rid AND a.case_manager_id = me.id
                  AND a.state IN ('offered', 'accepted'))))
    )
    SELECT m.id, o.id, o.status, o.region, o.received_at,
           (SELECT st.display_name FROM assignments a JOIN staff st ON st.id = a.case_manager_id
            WHERE a.referral_id = o.id AND a.state IN ('offered', 'accepted')
            ORDER BY a.offered_at DESC LIMIT 1),
           m.score, m.reasons, m.status, m.found_at
    FROM youth_matches m
    JOIN referrals o ON o.id = CASE WHEN m.referral_id = rid THEN m.other_referral_id ELSE m.referral_id END
    WHERE (m.referral_id = rid OR m.other_referral_id = rid) AND EXISTS (SELECT 1 FROM allowed)
    ORDER BY m.found_at DESC
$$;

-- Shredding forgets the youth: the blind indexes and the matches of a referral whose PII is gone.
CREATE FUNCTION refnet_forget_youth(rid uuid) RETURNS void
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
SET app.role = 'system'
AS $$
    DELETE FROM youth_tokens WHERE referral_id = rid
      AND EXISTS (SELECT 1 FROM referrals r WHERE r.id = rid AND r.pii_shredded_at IS NOT NULL);
    DELETE FROM youth_matches WHERE (referral_id = rid OR other_referral_id = rid)
      AND EXISTS (SELECT 1 FROM referrals r WHERE r.id = rid AND r.pii_shredded_at IS NOT NULL);
$$;

REVOKE ALL ON FUNCTION refnet_youth_candidates(uuid, text[], bytea[]), refnet_youth_matches_of(uuid),
    refnet_forget_youth(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refnet_youth_candidates(uuid, text[], bytea[]), refnet_youth_matches_of(uuid),
    refnet_forget_youth(uuid) TO refnet_app;

-- FHIR polling (`GET /fhir/r4/Task?_lastUpdated=ge...`): a partner's referrals by last change.
CREATE INDEX referrals_partner_updated ON referrals (partner_id, updated_at, id);
