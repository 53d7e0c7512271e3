-- Data keys wrapped by any master key but the current one, a batch at a time.
SELECT referral_id, key_id, wrapped_key FROM referral_keys WHERE key_id <> $1 LIMIT $2 FOR UPDATE SKIP LOCKED
