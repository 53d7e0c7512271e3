-- The referral's sealed PII and its wrapped data key (gone once shredded).
SELECT p.nonce, p.ciphertext, k.key_id, k.wrapped_key
FROM referral_pii p JOIN referral_keys k USING (referral_id)
WHERE p.referral_id = $1
