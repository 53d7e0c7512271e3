-- Referrals the caller may see, newest first (a supervisor: their region and the out-of-area ones, which
-- no region owns). $1 id (or null for a list), $2 role, $3 partner id,
-- $4 staff id, $5 region, $6 status filter, $7/$8 keyset cursor, $9 limit.
SELECT r.id, r.status, r.region, r.needs, r.urgency, r.received_at, r.updated_at, r.assigned_at,
       r.accepted_at, r.closed_at, r.outcome, r.unroutable_reason, r.engaged_at, r.close_reason,
       r.do_not_contact
FROM referrals r
WHERE ($1::uuid IS NULL OR r.id = $1)
  AND (
        ($2 = 'partner' AND r.partner_id = $3::uuid)
     OR ($2 = 'case_manager' AND EXISTS (
            SELECT 1 FROM assignments a
            WHERE a.referral_id = r.id AND a.case_manager_id = $4::uuid AND a.state IN ('offered', 'accepted')))
     OR ($2 = 'supervisor' AND (r.region = $5 OR r.region IS NULL))
     OR $2 = 'admin'
  )
  AND ($6::text IS NULL OR r.status = $6)
  AND ($7::timestamptz IS NULL OR (r.received_at, r.id) < ($7, $8::uuid))
ORDER BY r.received_at DESC, r.id DESC
LIMIT $9
