-- One step to complete, locked; with the referral's receipt time (row-level security decides).
SELECT s.code, s.roles, s.reference_required, s.outcomes, s.due_at, s.completed_at, r.received_at
FROM protocol_steps s JOIN referrals r ON r.id = s.referral_id
WHERE s.referral_id = $1 AND s.code = $2
FOR UPDATE OF s
