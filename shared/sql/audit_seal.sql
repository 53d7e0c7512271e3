-- A sealing batch's numbers and hashes, one statement for the batch (one row per audited row).
-- $1 seq, $2 prev_hash, $3 hash, $4 id: parallel arrays. The rows were read unsealed and locked
-- (audit_unsealed.sql); `seq IS NULL` lets the planner read them from the small partial index of
-- unsealed rows instead of probing the primary key once per row.
UPDATE audit_log a SET seq = u.seq, prev_hash = u.prev_hash, hash = u.hash
FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::bigint[]) AS u (seq, prev_hash, hash, id)
WHERE a.id = u.id AND a.seq IS NULL
