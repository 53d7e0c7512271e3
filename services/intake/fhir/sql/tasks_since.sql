-- The caller's referrals (as Tasks) changed at or after $2 (or after, when $3), oldest change first,
-- with the Task identifier each was created under. $1 the partner, $4 the prefix of FHIR keys, $5 limit.
SELECT r.id, r.status, r.urgency, r.received_at, r.updated_at, r.unroutable_reason,
       (SELECT substr(i.key, length($4) + 1) FROM idempotency_keys i
        WHERE i.referral_id = r.id AND i.key LIKE $4 || '%' LIMIT 1) AS identifier
FROM referrals r
WHERE r.partner_id = $1
  AND ($2::timestamptz IS NULL OR r.updated_at > $2 OR (NOT $3 AND r.updated_at = $2))
ORDER BY r.updated_at, r.id
LIMIT $5
