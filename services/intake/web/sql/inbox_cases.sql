-- The case manager's accepted cases, the most recently changed first.
-- With the consent in force: when it expires and the whole days left (issue 17).
SELECT a.id, a.referral_id, a.responded_at, r.status, r.region, r.needs, r.urgency, r.received_at, r.updated_at,
       c.expires_at AS consent_expires_at,
       greatest(0, ceil(extract(epoch FROM c.expires_at - now()) / 86400))::int AS consent_days_left
FROM assignments a JOIN referrals r ON r.id = a.referral_id
LEFT JOIN consents c ON c.referral_id = a.referral_id AND c.withdrawn_at IS NULL
WHERE a.case_manager_id = $1 AND a.state = 'accepted'
ORDER BY r.updated_at DESC
LIMIT 200
