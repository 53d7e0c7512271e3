-- A new key: only its hash is kept (and its first characters, to recognise it in lists).
INSERT INTO api_keys (id, partner_id, prefix, key_hash, label) VALUES ($1, $2, $3, $4, $5)
