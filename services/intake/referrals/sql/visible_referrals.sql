-- Referrals the caller may see, newest first (a supervisor: their region and the out-of-area ones, which
-- no region owns). $1 id (or null for a list), $2 role, $3 partner id,
-- $4 staff id, $5 region, $6 status filter, $7/$8 keyset cursor, $9 limit, $10 the consent scope that
-- lets the referrer follow the case (share_status_with_referrer).
-- A partner learns more than received/withdrawn only while the youth's consent covers $10: otherwise
-- it sees the referral as received (or withdrawn, once it stopped or consent was withdrawn), with none
-- of the later dates, codes or outcome. The status filter applies to the status the caller sees.
SELECT r.id, v.status, r.region, r.needs, r.urgency, r.received_at,
       CASE WHEN v.shared OR v.status = 'withdrawn' THEN r.updated_at ELSE r.received_at END AS updated_at,
       CASE WHEN v.shared THEN r.assigned_at END AS assigned_at,
       CASE WHEN v.shared THEN r.accepted_at END AS accepted_at,
       CASE WHEN v.shared THEN r.closed_at END AS closed_at,
       CASE WHEN v.shared THEN r.outcome END AS outcome,
       CASE WHEN v.shared THEN r.unroutable_reason END AS unroutable_reason,
       CASE WHEN v.shared THEN r.engaged_at END AS engaged_at,
       CASE WHEN v.shared THEN r.close_reason END AS close_reason,
       r.do_not_contact
FROM referrals r
CROSS JOIN LATERAL (
    SELECT s.shared,
           CASE WHEN s.shared THEN r.status
                WHEN r.status = 'withdrawn' OR NOT refnet_consent_covers(r.id, 'case_management') THEN 'withdrawn'
                ELSE 'received' END AS status
    -- Staff see the case as it is; anyone else (a partner, or a partner's user) only as consent allows.
    FROM (SELECT $2 IN ('case_manager', 'supervisor', 'admin') OR r.status = 'received'
                 OR refnet_consent_covers(r.id, $10) AS shared) s
) v
WHERE ($1::uuid IS NULL OR r.id = $1)
  AND (
        ($2 IN ('partner', 'intake_staff') AND r.partner_id = $3::uuid)
     OR ($2 = 'case_manager' AND EXISTS (
            SELECT 1 FROM assignments a
            WHERE a.referral_id = r.id AND a.case_manager_id = $4::uuid AND a.state IN ('offered', 'accepted')))
     OR ($2 = 'supervisor' AND (r.region = $5 OR r.region IS NULL))
     OR $2 = 'admin'
  )
  AND ($6::text IS NULL OR v.status = $6)
  AND ($7::timestamptz IS NULL OR (r.received_at, r.id) < ($7, $8::uuid))
ORDER BY r.received_at DESC, r.id DESC
LIMIT $9
