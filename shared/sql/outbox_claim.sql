-- Claim and delete a batch in one statement: the rows stay locked by the relay's transaction, and only
-- its commit (after every publish was acknowledged) makes the deletion real.
DELETE FROM outbox
WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, event_id, subject, payload, created_at, attempts
