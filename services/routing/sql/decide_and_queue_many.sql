-- A routing batch's referrals that go to the supervisor queue, in one statement (as insert_decision.sql,
-- mark_unroutable.sql and the outbox insert were for each): the decision records ($1 ids, $2 referrals,
-- $3 decided at, $4 outcomes, $5 records, $6 policy version), the referrals moved to `unroutable` with
-- their reasons ($7; keeping how long one already there has waited), and their events ($8-$10, in the
-- order given). A batch names each referral once (routing's worker sees to it).
WITH decision AS (
    INSERT INTO routing_decisions (id, referral_id, decided_at, outcome, chosen_id, detail, policy_version)
    SELECT d, r, t, o, NULL, x, $6
    FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::jsonb[]) AS u (d, r, t, o, x)
), queued AS (
    UPDATE referrals f SET status = 'unroutable', unroutable_reason = u.reason, updated_at = now(),
        queued_at = CASE WHEN f.status = 'unroutable' THEN coalesce(f.queued_at, now()) ELSE now() END
    FROM unnest($2::uuid[], $7::text[]) AS u (id, reason)
    WHERE f.id = u.id
), events AS (
    INSERT INTO outbox (event_id, subject, payload)
    SELECT e, s, p FROM unnest($8::uuid[], $9::text[], $10::bytea[]) WITH ORDINALITY AS u (e, s, p, n)
    ORDER BY n
)
SELECT 1
