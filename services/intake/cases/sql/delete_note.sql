-- A note whose purpose was refused (a manual assignment routing did not make).
DELETE FROM referral_notes WHERE id = $1
