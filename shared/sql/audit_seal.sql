UPDATE audit_log SET seq = $1, prev_hash = $2, hash = $3 WHERE id = $4
