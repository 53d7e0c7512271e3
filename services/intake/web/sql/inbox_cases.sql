-- The case manager's accepted cases, the most recently changed first.
SELECT a.id, a.referral_id, a.responded_at, r.status, r.region, r.needs, r.urgency, r.received_at, r.updated_at
FROM assignments a JOIN referrals r ON r.id = a.referral_id
WHERE a.case_manager_id = $1 AND a.state = 'accepted'
ORDER BY r.updated_at DESC
LIMIT 200
