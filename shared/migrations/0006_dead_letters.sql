-- Dead letters: a bus message that kept failing (or can never succeed) is recorded here by the
-- consumer process that gave up on it, in its own transaction, before the message is terminated.
-- Admins read them (GET /v1/admin/dead-letters); nothing here is PII: events carry ids and codes,
-- and the error text is redacted of quoted values before it is stored.
CREATE TABLE dead_letters (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer        text NOT NULL,
    subject         text NOT NULL,
    -- From the decoded event, or the Nats-Msg-Id header; NULL when neither could be read.
    event_id        uuid,
    stream_seq      bigint NOT NULL,
    delivery_count  integer NOT NULL,
    -- 'poison' (the handler said it can never succeed), 'undecodable' or 'exhausted' (max deliveries).
    reason          text NOT NULL CHECK (reason IN ('poison', 'undecodable', 'exhausted')),
    error_class     text NOT NULL,
    error_message   text NOT NULL DEFAULT '',
    payload         bytea NOT NULL,
    first_failed_at timestamptz NOT NULL DEFAULT now(),
    last_failed_at  timestamptz NOT NULL DEFAULT now(),
    -- A message dead-lettered again (the record committed, the term was lost) updates its row.
    UNIQUE (consumer, stream_seq)
);
CREATE INDEX dead_letters_recent ON dead_letters (last_failed_at DESC, id DESC);

ALTER TABLE dead_letters ENABLE ROW LEVEL SECURITY;
ALTER TABLE dead_letters FORCE ROW LEVEL SECURITY;
CREATE POLICY system_all ON dead_letters USING (refnet_role() = 'system') WITH CHECK (refnet_role() = 'system');
CREATE POLICY admin_read ON dead_letters FOR SELECT USING (refnet_role() = 'admin');
