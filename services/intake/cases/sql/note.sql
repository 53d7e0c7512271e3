-- A sealed note and its referral's data key (gone once the referral's details are shredded).
SELECT n.referral_id, n.kind, n.nonce, n.ciphertext, k.key_id, k.wrapped_key
FROM referral_notes n LEFT JOIN referral_keys k ON k.referral_id = n.referral_id
WHERE n.id = $1
