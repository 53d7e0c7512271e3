-- New referrals, one row per element of the arrays (a whole group commit of one caller, or one referral
-- alone): each referral with its sealed PII, its data key, its consent, the idempotency record, the
-- outbox event, a minor's protocol steps and the audit record commit together or not at all; one
-- statement for the lot, so the executor is set up once per batch, not once per referral (issue 19).
-- Lists (needs, consent scope, a step's roles, outcomes and escalations) travel comma-joined: they are
-- codes from closed vocabularies (validated before this), and arrays of arrays must be rectangular.
WITH v AS MATERIALIZED (
    SELECT *
    FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int[],
                $8::jsonb[], $9::timestamptz[], $10::text[], $11::bytea[], $12::bytea[], $13::bytea[],
                $14::text[], $15::text[], $16::timestamptz[], $17::timestamptz[], $18::uuid[], $19::text[],
                $20::bytea[], $21::text[], $22::bytea[], $23::bytea[], $24::bytea[], $25::bool[],
                $26::text[], $27::bool[])
         AS v (id, partner_id, region, needs, language, urgency, age_years, intake, received_at, key_id,
               wrapped_key, nonce, ciphertext, method, scope, obtained_at, expires_at, event_id, subject,
               payload, idempotency_key, request_hash, response_body, youth_key, do_not_contact,
               contact_channel, contact_voicemail_ok)
), r AS (
    INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years, intake,
                           received_at, updated_at, youth_key, do_not_contact, contact_channel,
                           contact_voicemail_ok)
    SELECT id, partner_id, 'received', region, string_to_array(needs, ','), language, urgency, age_years,
           intake, received_at, received_at, youth_key, do_not_contact, contact_channel, contact_voicemail_ok
    FROM v
    RETURNING id, partner_id
), k AS (
    INSERT INTO referral_keys (referral_id, partner_id, key_id, wrapped_key)
    SELECT id, partner_id, key_id, wrapped_key FROM v
), p AS (
    INSERT INTO referral_pii (referral_id, partner_id, nonce, ciphertext)
    SELECT id, partner_id, nonce, ciphertext FROM v
), c AS (
    INSERT INTO consents (referral_id, partner_id, method, scope, obtained_at, expires_at)
    SELECT id, partner_id, method, string_to_array(scope, ','), obtained_at, expires_at FROM v
), o AS (
    INSERT INTO outbox (event_id, subject, payload) SELECT event_id, subject, payload FROM v
), i AS (
    INSERT INTO idempotency_keys (partner_id, key, request_hash, status_code, response_body, referral_id)
    SELECT partner_id, idempotency_key, request_hash, 201, response_body, id FROM v
    WHERE idempotency_key IS NOT NULL
), s AS (
    -- The child-protection protocol's steps for minors (issue 18): one element per step of every
    -- referral in the batch, $28 naming its referral (protocol.service.new_step_columns, flattened).
    INSERT INTO protocol_steps (referral_id, partner_id, protocol_version, code, position, roles, clock_from,
                                clock_minutes, reference_required, outcomes, escalate_to, due_at)
    SELECT s.referral_id, v.partner_id, s.version, s.code, s.position, string_to_array(s.roles, ','),
           s.clock_from, s.clock_minutes, s.reference_required,
           coalesce(string_to_array(nullif(s.outcomes, ''), ','), '{}'),
           coalesce(string_to_array(nullif(s.escalate_to, ''), ','), '{}'), s.due_at
    FROM unnest($28::uuid[], $29::text[], $30::text[], $31::int[], $32::text[], $33::text[], $34::int[],
                $35::bool[], $36::text[], $37::text[], $38::timestamptz[])
         AS s (referral_id, version, code, position, roles, clock_from, clock_minutes, reference_required,
               outcomes, escalate_to, due_at)
    JOIN v ON v.id = s.referral_id
), a AS (
    -- Every PII write is audited, in the same transaction, naming who acted (a partner user or the
    -- agency's intake staff member; for an API key, the partner).
    INSERT INTO audit_log (actor_role, actor_id, partner_id, action, target_type, target_id)
    SELECT coalesce(nullif(current_setting('app.role', true), ''), 'partner'),
           coalesce(nullif(current_setting('app.actor_id', true), ''), partner_id::text),
           partner_id::text, 'pii.write', 'referral', id::text FROM r
)
SELECT count(*) FROM r
