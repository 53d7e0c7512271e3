-- The Task identifier a partner's FHIR Bundle created referral $1 under (row-level security: theirs).
SELECT substr(key, length($2) + 1) FROM idempotency_keys WHERE referral_id = $1 AND key LIKE $2 || '%'
LIMIT 1
