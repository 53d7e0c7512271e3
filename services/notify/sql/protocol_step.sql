-- An overdue protocol step as the database has it now, with the referral's region and whom to tell.
SELECT s.code, s.due_at, s.completed_at, s.escalate_to, r.region, r.status
FROM protocol_steps s JOIN referrals r ON r.id = s.referral_id
WHERE s.referral_id = $1 AND s.code = $2
