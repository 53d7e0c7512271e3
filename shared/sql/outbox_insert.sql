-- Every event of the transaction in one statement (one round trip, one NOTIFY from the trigger),
-- in the order given: the identity column keeps it for the relay.
INSERT INTO outbox (event_id, subject, payload)
SELECT e, s, p FROM unnest($1::uuid[], $2::text[], $3::bytea[]) WITH ORDINALITY AS t (e, s, p, n)
ORDER BY n
