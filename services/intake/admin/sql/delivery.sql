-- One outbound delivery (as deliveries.sql shows it).
SELECT id, channel, kind, event_id, state, attempts, last_status, last_error, endpoint_id, partner_id, staff_id,
       referral_id, created_at, updated_at, delivered_at,
       CASE WHEN state IN ('pending', 'failed') THEN next_attempt_at END AS next_attempt_at
FROM deliveries
WHERE id = $1
