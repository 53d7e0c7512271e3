-- The caller's referrals (as Tasks) changed at or after $2 (or after, when $3), oldest change first,
-- with the Task identifier each was created under. $1 the partner, $4 the prefix of FHIR keys, $5 limit,
-- $6 the consent scope that lets the referrer follow the case (share_status_with_referrer).
-- Masked exactly as visible_referrals.sql masks a partner's status view: without that scope the Task
-- stays `requested` (received) or `cancelled` (withdrawn), and its lastModified does not move with the
-- case, so neither the status nor the search reveals what the youth did not agree to share.
SELECT r.id, v.status, r.urgency, r.received_at, v.updated_at,
       CASE WHEN v.shared THEN r.unroutable_reason END AS unroutable_reason,
       (SELECT substr(i.key, length($4) + 1) FROM idempotency_keys i
        WHERE i.referral_id = r.id AND i.key LIKE $4 || '%' LIMIT 1) AS identifier
FROM referrals r
CROSS JOIN LATERAL (
    SELECT s.shared,
           CASE WHEN s.shared THEN r.status
                WHEN r.status = 'withdrawn' OR NOT refnet_consent_covers(r.id, 'case_management') THEN 'withdrawn'
                ELSE 'received' END AS status,
           CASE WHEN s.shared OR r.status = 'withdrawn'
                     OR NOT refnet_consent_covers(r.id, 'case_management') THEN r.updated_at
                ELSE r.received_at END AS updated_at
    FROM (SELECT r.status = 'received' OR refnet_consent_covers(r.id, $6) AS shared) s
) v
WHERE r.partner_id = $1
  AND ($2::timestamptz IS NULL OR v.updated_at > $2 OR (NOT $3 AND v.updated_at = $2))
ORDER BY v.updated_at, r.id
LIMIT $5
