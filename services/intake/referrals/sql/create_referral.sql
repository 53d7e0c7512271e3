-- One round trip, one transaction: the referral, its sealed PII, its data key, its consent, the
-- idempotency record, the outbox event and a minor's protocol steps commit together or not at all.
WITH r AS (
    INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years, intake,
                           received_at, updated_at, youth_key)
    VALUES ($1, $2, 'received', $3, $4, $5, $6, $7, $8, $9, $9, $24)
    RETURNING id, partner_id
), k AS (
    INSERT INTO referral_keys (referral_id, partner_id, key_id, wrapped_key) SELECT id, $2, $10, $11 FROM r
), p AS (
    INSERT INTO referral_pii (referral_id, partner_id, nonce, ciphertext) SELECT id, $2, $12, $13 FROM r
), c AS (
    INSERT INTO consents (referral_id, partner_id, method, scope, obtained_at, expires_at)
    SELECT id, $2, $14, $15, $16, $17 FROM r
), o AS (
    INSERT INTO outbox (event_id, subject, payload) SELECT $18, $19, $20 FROM r
), i AS (
    INSERT INTO idempotency_keys (partner_id, key, request_hash, status_code, response_body, referral_id)
    SELECT $2, $21, $22, 201, $23, id FROM r WHERE $21::text IS NOT NULL
), s AS (
    -- The child-protection protocol's steps for a minor (issue 18; none when the arrays are empty):
    -- $25 protocol version, then one array per column in step order (protocol.service.new_step_columns).
    INSERT INTO protocol_steps (referral_id, partner_id, protocol_version, code, position, roles, clock_from,
                                clock_minutes, reference_required, outcomes, escalate_to, due_at)
    SELECT r.id, $2, $25, s.code, s.position, string_to_array(s.roles, ','), s.clock_from, s.clock_minutes,
           s.reference_required, coalesce(string_to_array(nullif(s.outcomes, ''), ','), '{}'),
           coalesce(string_to_array(nullif(s.escalate_to, ''), ','), '{}'), s.due_at
    FROM r, unnest($26::text[], $27::int[], $28::text[], $29::text[], $30::int[], $31::bool[], $32::text[],
                   $33::text[], $34::timestamptz[])
         AS s (code, position, roles, clock_from, clock_minutes, reference_required, outcomes, escalate_to,
               due_at)
), a AS (
    -- Every PII write is audited, in the same transaction, naming who acted (a partner user or the
    -- agency's intake staff member; for an API key, the partner).
    INSERT INTO audit_log (actor_role, actor_id, partner_id, action, target_type, target_id)
    SELECT coalesce(nullif(current_setting('app.role', true), ''), 'partner'),
           coalesce(nullif(current_setting('app.actor_id', true), ''), partner_id::text),
           partner_id::text, 'pii.write', 'referral', id::text FROM r
)
SELECT id FROM r
