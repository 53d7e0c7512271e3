-- A delivery and what decides whether it may be sent again, locked against a concurrent replay.
SELECT d.state, d.channel, e.state AS endpoint_state, r.status AS referral_status
FROM deliveries d
LEFT JOIN webhook_endpoints e ON e.id = d.endpoint_id
LEFT JOIN referrals r ON r.id = d.referral_id
WHERE d.id = $1
FOR UPDATE OF d
