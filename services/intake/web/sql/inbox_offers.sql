-- The case manager's open offers, the most urgent deadline first.
SELECT a.id, a.referral_id, a.offered_at, a.respond_by, r.region, r.needs, r.urgency,
       r.do_not_contact, r.contact_channel, r.contact_voicemail_ok
FROM assignments a JOIN referrals r ON r.id = a.referral_id
WHERE a.case_manager_id = $1 AND a.state = 'offered'
ORDER BY a.respond_by
LIMIT 100
