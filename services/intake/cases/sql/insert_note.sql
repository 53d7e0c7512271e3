-- A sealed note about a referral (migration 0061).
INSERT INTO referral_notes (id, referral_id, kind, nonce, ciphertext, written_by) VALUES ($1, $2, $3, $4, $5, $6)
