-- Claim and delete a batch in one statement: the rows stay locked by the relay's transaction, and only
-- its commit (after every publish was acknowledged) makes the deletion real. $2: the subjects this relay
-- may publish (NULL: all). $3: the lowest id to read from (shared.outbox: a floor under the relay's last
-- claim, 0 now and then), so the claim does not step over every dead entry the relayed rows left.
DELETE FROM outbox
WHERE id IN (
    SELECT id FROM outbox WHERE id >= $3::bigint AND ($2::text[] IS NULL OR subject = ANY($2::text[]))
    ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED
)
RETURNING id, event_id, subject, payload, created_at, attempts
