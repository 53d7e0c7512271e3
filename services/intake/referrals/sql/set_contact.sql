-- The youth's safe channel and voicemail preference, when the referral gave any (a second statement,
-- not a parameter of the hot insert).
UPDATE referrals SET contact_channel = $2, contact_voicemail_ok = $3 WHERE id = $1
