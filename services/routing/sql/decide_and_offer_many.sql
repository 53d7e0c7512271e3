-- A routing batch's automatic offers in one statement, one element per offer (as decide_and_offer.sql):
-- the decision records ($1 ids, $2 referrals, $3 decided at, $4 chosen, $5 records, $6 policy version),
-- the offers (their places already taken; $7 ids, $8 respond by, $9 attempts), the referrals moved to
-- `assigned`, and their events into the outbox ($10-$12, in the order given).
WITH decision AS (
    INSERT INTO routing_decisions (id, referral_id, decided_at, outcome, chosen_id, detail, policy_version)
    SELECT d, r, $3, 'assigned', c, x, $6
    FROM unnest($1::uuid[], $2::uuid[], $4::uuid[], $5::jsonb[]) AS t (d, r, c, x)
), offer AS (
    INSERT INTO assignments (id, referral_id, case_manager_id, state, offered_at, respond_by, attempt)
    SELECT a, r, c, 'offered', $3, b, n
    FROM unnest($7::uuid[], $2::uuid[], $4::uuid[], $8::timestamptz[], $9::int[]) AS t (a, r, c, b, n)
), assigned AS (
    UPDATE referrals SET status = 'assigned', assigned_at = $3, updated_at = $3, unroutable_reason = NULL,
                         queued_at = NULL
    WHERE id = ANY ($2::uuid[])
), events AS (
    INSERT INTO outbox (event_id, subject, payload)
    SELECT e, s, p FROM unnest($10::uuid[], $11::text[], $12::bytea[]) WITH ORDINALITY AS t (e, s, p, n)
    ORDER BY n
)
SELECT 1
