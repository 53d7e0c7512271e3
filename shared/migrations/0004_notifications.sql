-- Notifications beyond in-app: partner webhook endpoints, outbound deliveries (webhook and email)
-- with their attempt log and counters, offer reminders, and staff email preferences.

-- Staff choose email on top of in-app (in-app is always on). Off by default: email leaves the platform.
ALTER TABLE staff ADD COLUMN email_notifications boolean NOT NULL DEFAULT false;

-- A partner's webhook endpoint. Written by intake (registration, rotation, deletion) and by notify
-- (health: verification, throttling, failures, disabling).
CREATE TABLE webhook_endpoints (
    id                          uuid PRIMARY KEY,
    partner_id                  uuid NOT NULL REFERENCES partners (id),
    url                         text NOT NULL,
    events                      text[] NOT NULL,
    -- The signing secret (whsec_...), sealed with the master key and the endpoint id as associated
    -- data: a database dump alone cannot forge webhooks.
    secret_sealed               bytea NOT NULL,
    -- After a rotation the previous secret keeps signing, alongside the new one, until it expires.
    previous_secret_sealed      bytea,
    previous_secret_expires_at  timestamptz,
    state                       text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'disabled', 'deleted')),
    disabled_reason             text,
    disabled_at                 timestamptz,
    deleted_at                  timestamptz,
    verified_at                 timestamptz,
    last_success_at             timestamptz,
    failing_since               timestamptz,
    consecutive_failures        integer NOT NULL DEFAULT 0,
    -- 429/502/504 (or Retry-After) hold every delivery to this endpoint until then.
    throttled_until             timestamptz,
    created_at                  timestamptz NOT NULL DEFAULT now(),
    updated_at                  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_partner ON webhook_endpoints (partner_id) WHERE state <> 'deleted';

-- One outbound message per event, recipient and channel (the unique key absorbs redeliveries).
-- The dispatcher claims due rows with SKIP LOCKED; a claim pushes next_attempt_at out by a lease,
-- so a worker that dies mid-attempt leaves the row to be retried, never stuck.
CREATE TABLE deliveries (
    id              uuid PRIMARY KEY,
    event_id        uuid NOT NULL,
    kind            text NOT NULL,
    channel         text NOT NULL CHECK (channel IN ('webhook', 'email')),
    -- The endpoint (webhook), the staff member or the partner contact (email).
    recipient_id    uuid NOT NULL,
    endpoint_id     uuid REFERENCES webhook_endpoints (id),
    staff_id        uuid REFERENCES staff (id),
    partner_id      uuid REFERENCES partners (id),
    referral_id     uuid REFERENCES referrals (id),
    assignment_id   uuid REFERENCES assignments (id),
    -- Ids, codes and timestamps only: the webhook body, or the facts an email is rendered from.
    payload         jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'failed', 'delivered', 'dead', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    -- attempts at the start of the current round (a replay starts a new round of retries).
    round_start     integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (event_id, recipient_id, channel),
    CHECK (recipient_id = coalesce(endpoint_id, staff_id, partner_id)),
    CHECK (channel <> 'webhook' OR endpoint_id IS NOT NULL)
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state IN ('pending', 'failed');
CREATE INDEX deliveries_state ON deliveries (state, created_at DESC, id DESC);
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, created_at DESC) WHERE endpoint_id IS NOT NULL;
CREATE INDEX deliveries_referral ON deliveries (referral_id) WHERE referral_id IS NOT NULL;

CREATE FUNCTION refnet_notify_delivery() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('refnet_deliveries', '');
    RETURN NULL;
END $$;
CREATE TRIGGER deliveries_notify AFTER INSERT ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION refnet_notify_delivery();

-- Every attempt: when, how long, what came back. Error classes only, never response bodies.
CREATE TABLE delivery_attempts (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id     uuid NOT NULL REFERENCES deliveries (id),
    attempt         integer NOT NULL,
    started_at      timestamptz NOT NULL,
    latency_ms      double precision NOT NULL,
    status_code     integer,
    error           text,
    outcome         text NOT NULL CHECK (outcome IN ('delivered', 'retry', 'throttled', 'dead', 'gone')),
    next_attempt_at timestamptz
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, id);

-- Monotonic counters (delivered, retried, dead_lettered, ...) per channel, spread over a few
-- shards so concurrent deliveries do not queue on one row; read as sums.
CREATE TABLE delivery_counters (
    channel     text NOT NULL,
    metric      text NOT NULL,
    shard       smallint NOT NULL,
    value       bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (channel, metric, shard)
);

-- At most one reminder per offer, however many notify workers sweep at once.
CREATE TABLE offer_reminders (
    assignment_id   uuid PRIMARY KEY REFERENCES assignments (id),
    event_id        uuid NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now()
);
