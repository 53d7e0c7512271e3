-- Foundation schema: partners, staff, referrals with PII kept apart, consent, idempotency,
-- routing (case managers, assignments), notifications, and the transactional outbox.

CREATE TABLE partners (
    id              uuid PRIMARY KEY,
    name            text NOT NULL UNIQUE,
    kind            text NOT NULL DEFAULT 'community_organization',
    contact_email   text,
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- Partner API keys are random, shown once and stored only as a SHA-256 digest (they carry
-- 256 bits of entropy, so a slow password hash would add nothing but latency).
CREATE TABLE api_keys (
    id              uuid PRIMARY KEY,
    partner_id      uuid NOT NULL REFERENCES partners (id),
    prefix          text NOT NULL,
    key_hash        bytea NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    last_used_at    timestamptz
);
CREATE INDEX api_keys_partner ON api_keys (partner_id);

CREATE TABLE staff (
    id              uuid PRIMARY KEY,
    email           text NOT NULL,
    display_name    text NOT NULL DEFAULT '',
    role            text NOT NULL CHECK (role IN ('case_manager', 'supervisor', 'admin', 'evaluator')),
    region          text,
    password_hash   text NOT NULL,
    failed_logins   integer NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX staff_email ON staff (lower(email));

CREATE TABLE case_managers (
    staff_id        uuid PRIMARY KEY REFERENCES staff (id),
    regions         text[] NOT NULL,
    needs           text[] NOT NULL,
    languages       text[] NOT NULL DEFAULT '{en}',
    capacity        integer NOT NULL CHECK (capacity >= 0),
    -- Offered + accepted + engaged cases. Maintained in the same transactions that change
    -- assignments; a conditional UPDATE (active_count < capacity) is the capacity guard.
    active_count    integer NOT NULL DEFAULT 0 CHECK (active_count >= 0),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'away', 'inactive')),
    away_until      date
);
CREATE INDEX case_managers_regions ON case_managers USING gin (regions);

CREATE TABLE referrals (
    id                  uuid PRIMARY KEY,
    partner_id          uuid NOT NULL REFERENCES partners (id),
    status              text NOT NULL CHECK (status IN
                            ('received', 'assigned', 'accepted', 'engaged', 'closed', 'unroutable', 'withdrawn')),
    region              text,
    needs               text[] NOT NULL,
    language            text NOT NULL DEFAULT 'en',
    urgency             text NOT NULL CHECK (urgency IN ('routine', 'urgent')),
    age_years           smallint NOT NULL,
    -- Coded, de-identified intake attributes for evaluation (no free text).
    intake              jsonb NOT NULL DEFAULT '{}',
    unroutable_reason   text,
    outcome             text,
    received_at         timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    assigned_at         timestamptz,
    accepted_at         timestamptz,
    closed_at           timestamptz
);
CREATE INDEX referrals_partner_received ON referrals (partner_id, received_at DESC, id DESC);
CREATE INDEX referrals_status ON referrals (status, received_at);

-- Identifying details live apart from routing fields, encrypted per referral (AES-256-GCM with a
-- data key wrapped by the master key). Deleting the key row crypto-shreds the ciphertext.
CREATE TABLE referral_keys (
    referral_id     uuid PRIMARY KEY REFERENCES referrals (id),
    key_id          text NOT NULL,
    wrapped_key     bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE referral_pii (
    referral_id     uuid PRIMARY KEY REFERENCES referrals (id),
    partner_id      uuid NOT NULL REFERENCES partners (id),
    nonce           bytea NOT NULL,
    ciphertext      bytea NOT NULL
);

CREATE TABLE consents (
    referral_id     uuid PRIMARY KEY REFERENCES referrals (id),
    partner_id      uuid NOT NULL REFERENCES partners (id),
    method          text NOT NULL,
    scope           text[] NOT NULL,
    obtained_at     timestamptz NOT NULL,
    expires_at      timestamptz NOT NULL,
    withdrawn_at    timestamptz
);

CREATE TABLE idempotency_keys (
    partner_id      uuid NOT NULL REFERENCES partners (id),
    key             text NOT NULL,
    request_hash    bytea NOT NULL,
    status_code     integer NOT NULL,
    response_body   bytea NOT NULL,
    referral_id     uuid REFERENCES referrals (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, key)
);

CREATE TABLE assignments (
    id                  uuid PRIMARY KEY,
    referral_id         uuid NOT NULL REFERENCES referrals (id),
    case_manager_id     uuid NOT NULL REFERENCES case_managers (staff_id),
    state               text NOT NULL CHECK (state IN ('offered', 'accepted', 'declined', 'expired', 'cancelled')),
    offered_at          timestamptz NOT NULL DEFAULT now(),
    respond_by          timestamptz NOT NULL,
    responded_at        timestamptz,
    decline_reason      text,
    attempt             integer NOT NULL DEFAULT 1
);
-- At most one live assignment per referral: the database, not process memory, forbids doubles.
CREATE UNIQUE INDEX assignments_one_live ON assignments (referral_id) WHERE state IN ('offered', 'accepted');
CREATE INDEX assignments_case_manager ON assignments (case_manager_id, state);
CREATE INDEX assignments_offered_deadline ON assignments (respond_by) WHERE state = 'offered';

CREATE TABLE routing_decisions (
    id              uuid PRIMARY KEY,
    referral_id     uuid NOT NULL REFERENCES referrals (id),
    decided_at      timestamptz NOT NULL DEFAULT now(),
    outcome         text NOT NULL,
    chosen_id       uuid,
    detail          jsonb NOT NULL
);
CREATE INDEX routing_decisions_referral ON routing_decisions (referral_id, decided_at);

CREATE TABLE notifications (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    recipient_id    uuid NOT NULL REFERENCES staff (id),
    channel         text NOT NULL DEFAULT 'inapp',
    kind            text NOT NULL,
    event_id        uuid NOT NULL,
    referral_id     uuid REFERENCES referrals (id),
    assignment_id   uuid REFERENCES assignments (id),
    data            jsonb NOT NULL DEFAULT '{}',
    created_at      timestamptz NOT NULL DEFAULT now(),
    read_at         timestamptz,
    -- One notification per event, recipient and channel, however often the event is delivered.
    UNIQUE (event_id, recipient_id, channel)
);
CREATE INDEX notifications_recipient ON notifications (recipient_id, id);

CREATE FUNCTION refnet_notify_notification() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('refnet_notifications', NEW.recipient_id::text);
    RETURN NULL;
END $$;
CREATE TRIGGER notifications_notify AFTER INSERT ON notifications
    FOR EACH ROW EXECUTE FUNCTION refnet_notify_notification();

-- Exactly-once effects: a consumer records each event id in the transaction of its effect.
CREATE TABLE processed_messages (
    consumer        text NOT NULL,
    event_id        uuid NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Transactional outbox: written with the state change, published by the relay, then deleted.
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        uuid NOT NULL UNIQUE,
    subject         text NOT NULL,
    payload         bytea NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0
);

CREATE FUNCTION refnet_notify_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('refnet_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION refnet_notify_outbox();
