-- The youth's preferred language (an ISO 639-1 code; not PII) of a referral the caller may see.
SELECT language FROM referrals WHERE id = $1
