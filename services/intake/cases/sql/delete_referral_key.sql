-- Crypto-shredding: without its data key the referral's sealed PII can never be read again.
DELETE FROM referral_keys WHERE referral_id = $1
