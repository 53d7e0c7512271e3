-- A sealing batch's numbers and hashes, one statement for the batch (one row per audited row).
-- $1 seq, $2 prev_hash, $3 hash, $4 id: parallel arrays.
UPDATE audit_log a SET seq = u.seq, prev_hash = u.prev_hash, hash = u.hash
FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::bigint[]) AS u (seq, prev_hash, hash, id)
WHERE a.id = u.id
