-- Rows whose publish failed go back as they were (same id, so the order holds), attempts counted.
INSERT INTO outbox (id, event_id, subject, payload, created_at, attempts) OVERRIDING SYSTEM VALUE
SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::bytea[], $5::timestamptz[], $6::int[])
