-- Routing engine: case manager profiles (specialisms, need bitmask), the pseudonymous youth key for
-- continuity, decision provenance (automatic or manual, policy version), the supervisor queue, and
-- indexes that keep candidate selection fast with 10,000 case managers and millions of referrals.

-- The contract's closed list of need codes, in shared.codes.NEED_CODES order, as bit positions.
-- IMMUTABLE so a stored generated column can use it; routing compares masks instead of arrays.
CREATE FUNCTION refnet_need_mask(needs text[]) RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(bit_or(1 << (p - 1)), 0)::integer
    FROM (SELECT array_position(ARRAY['housing', 'mental_health', 'medical', 'substance_use', 'legal',
                                      'immigration', 'education', 'employment', 'basic_needs', 'family',
                                      'lgbtq_affirming', 'peer_support', 'safety_planning'], n) AS p
          FROM unnest(needs) AS n) AS s
    WHERE p IS NOT NULL
$$;

-- Optional specialisms, in services.routing.policy.SPECIALISMS order, as bit positions.
CREATE FUNCTION refnet_specialism_mask(specialisms text[]) RETURNS integer LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(bit_or(1 << (p - 1)), 0)::integer
    FROM (SELECT array_position(ARRAY['boys_young_men', 'lgbtq', 'minors_only', 'adults_18_24'], s) AS p
          FROM unnest(specialisms) AS s) AS t
    WHERE p IS NOT NULL
$$;

ALTER TABLE case_managers
    ADD COLUMN specialisms text[] NOT NULL DEFAULT '{}',
    ADD COLUMN need_mask integer GENERATED ALWAYS AS (refnet_need_mask(needs)) STORED,
    ADD COLUMN specialism_mask integer GENERATED ALWAYS AS (refnet_specialism_mask(specialisms)) STORED,
    ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now(),
    ADD CONSTRAINT case_managers_needs_known CHECK (needs <@ ARRAY['housing', 'mental_health', 'medical',
        'substance_use', 'legal', 'immigration', 'education', 'employment', 'basic_needs', 'family',
        'lgbtq_affirming', 'peer_support', 'safety_planning']::text[]),
    ADD CONSTRAINT case_managers_specialisms_known CHECK
        (specialisms <@ ARRAY['boys_young_men', 'lgbtq', 'minors_only', 'adults_18_24']::text[]),
    ADD CONSTRAINT case_managers_regions_present CHECK (cardinality(regions) > 0),
    ADD CONSTRAINT case_managers_away_until CHECK (status <> 'away' OR away_until IS NOT NULL);

-- Candidate selection (services/routing/sql/walk.sql) walks a region's case managers who can take a
-- case now, least loaded first, and stops as soon as nobody further along could score higher. Row-level
-- security keeps non-leakproof operators such as array containment out of index conditions, so the
-- walk keys on a plain region column: the region of a single-region case manager. Specialists and
-- case managers serving several regions have walks of their own.
ALTER TABLE case_managers ADD COLUMN region_key text
    GENERATED ALWAYS AS (CASE WHEN cardinality(regions) = 1 THEN regions[1] END) STORED;
CREATE INDEX case_managers_walk ON case_managers
    (region_key, (active_count::float8 / nullif(capacity, 0)), staff_id)
    WHERE status = 'active' AND active_count < capacity;
CREATE INDEX case_managers_multi_region_walk ON case_managers
    ((active_count::float8 / nullif(capacity, 0)), staff_id)
    WHERE cardinality(regions) > 1 AND status = 'active' AND active_count < capacity;
CREATE INDEX case_managers_specialists_walk ON case_managers
    (region_key, (active_count::float8 / nullif(capacity, 0)), staff_id)
    WHERE specialism_mask <> 0 AND status = 'active' AND active_count < capacity;
-- The return-from-away sweep.
CREATE INDEX case_managers_away ON case_managers (away_until) WHERE status = 'away';

-- HMAC of the youth's normalised name and date of birth under a server key (never reversible without
-- it): lets routing prefer a case manager who served the same youth before, without reading PII.
ALTER TABLE referrals
    ADD COLUMN youth_key bytea,
    ADD COLUMN queued_at timestamptz;
CREATE INDEX referrals_youth_key ON referrals (youth_key) WHERE youth_key IS NOT NULL;
-- The supervisor queue: unroutable referrals by region, most urgent then longest waiting first.
CREATE INDEX referrals_queue ON referrals (region, (urgency = 'urgent') DESC, received_at)
    WHERE status = 'unroutable';

-- Every offer of a referral (decliners to exclude, continuity); the unique index covers live ones only.
CREATE INDEX assignments_referral ON assignments (referral_id);

ALTER TABLE routing_decisions
    ADD COLUMN kind text NOT NULL DEFAULT 'automatic' CHECK (kind IN ('automatic', 'manual')),
    ADD COLUMN policy_version text,
    -- Manual assignments: who decided and why (staff-written text, kept out of events and audit detail).
    ADD COLUMN actor_id uuid REFERENCES staff (id),
    ADD COLUMN reason text,
    ADD CONSTRAINT routing_decisions_manual CHECK (kind = 'automatic' OR (actor_id IS NOT NULL AND reason IS NOT NULL));

-- Row-level security (0002) lets only routing's system identity write decisions. A manual assignment
-- is recorded by the supervisor (their own region) or admin who makes it, under their own identity.
CREATE POLICY manual_assignment ON routing_decisions FOR INSERT WITH CHECK (
    kind = 'manual' AND actor_id = refnet_actor()
    AND (refnet_role() = 'admin'
         OR (refnet_role() = 'supervisor' AND refnet_referral_region(referral_id) = refnet_region())));
