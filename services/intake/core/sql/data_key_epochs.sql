-- The master keys live data keys are wrapped by.
SELECT DISTINCT key_id FROM referral_keys
