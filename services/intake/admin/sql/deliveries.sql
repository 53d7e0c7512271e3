-- Outbound deliveries, newest first, filtered by state ($1), channel ($2) and endpoint ($3), after a
-- keyset cursor ($4, $5). Ids, codes and outcomes only: no payload, no URL, no email address.
SELECT id, channel, kind, event_id, state, attempts, last_status, last_error, endpoint_id, partner_id, staff_id,
       referral_id, created_at, updated_at, delivered_at,
       CASE WHEN state IN ('pending', 'failed') THEN next_attempt_at END AS next_attempt_at
FROM deliveries
WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR channel = $2)
  AND ($3::uuid IS NULL OR endpoint_id = $3)
  AND ($4::timestamptz IS NULL OR (created_at, id) < ($4, $5::uuid))
ORDER BY created_at DESC, id DESC
LIMIT $6
