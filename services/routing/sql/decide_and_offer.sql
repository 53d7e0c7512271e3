-- The whole write of an automatic offer in one statement (one round trip instead of four): the
-- decision record (as insert_decision.sql), the offer (its place already taken), the referral moved
-- to `assigned` (as offer_and_mark_assigned.sql) and its events into the outbox (as
-- shared/sql/outbox_insert.sql, in the order given).
WITH decision AS (
    INSERT INTO routing_decisions (id, referral_id, decided_at, outcome, chosen_id, detail, policy_version)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
), offer AS (
    INSERT INTO assignments (id, referral_id, case_manager_id, state, offered_at, respond_by, attempt)
    VALUES ($8, $2, $5, 'offered', $3, $9, $10)
), assigned AS (
    UPDATE referrals SET status = 'assigned', assigned_at = $3, updated_at = $3, unroutable_reason = NULL,
                         queued_at = NULL
    WHERE id = $2
), events AS (
    INSERT INTO outbox (event_id, subject, payload)
    SELECT e, s, p FROM unnest($11::uuid[], $12::text[], $13::bytea[]) WITH ORDINALITY AS t (e, s, p, n)
    ORDER BY n
)
SELECT 1
