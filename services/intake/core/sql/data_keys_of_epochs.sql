-- Every data key still wrapped by one of these master keys, locked (none skipped: they are about to go).
SELECT referral_id, key_id, wrapped_key FROM referral_keys WHERE key_id = ANY($1::text[]) FOR UPDATE
