-- The case manager's accepted cases with the next follow-up still to record (if any), the most recently
-- changed first (the page orders them by what needs attention); with the consent in force: when it
-- expires and the whole days left.
SELECT a.id, a.referral_id, a.responded_at, r.status, r.region, r.needs, r.urgency, r.language,
       r.received_at, r.updated_at, r.closed_at, f.point AS next_followup, f.due_on AS next_due,
       c.expires_at AS consent_expires_at,
       greatest(0, ceil(extract(epoch FROM c.expires_at - now()) / 86400))::int AS consent_days_left
FROM assignments a JOIN referrals r ON r.id = a.referral_id
LEFT JOIN consents c ON c.referral_id = a.referral_id AND c.withdrawn_at IS NULL
LEFT JOIN LATERAL (
    SELECT point, due_on FROM followups
    WHERE referral_id = r.id AND completed_at IS NULL ORDER BY due_on LIMIT 1
) f ON true
WHERE a.case_manager_id = $1 AND a.state = 'accepted'
ORDER BY r.updated_at DESC
LIMIT 200
