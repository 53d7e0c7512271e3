-- Marks the PII destroyed and forgets the youth key (derived from name and date of birth: left behind it
-- would still link this youth to later referrals); $2 is the status afterwards.
UPDATE referrals
SET pii_shredded_at = coalesce(pii_shredded_at, now()), youth_key = NULL, status = $2, updated_at = now()
WHERE id = $1
