-- A referral's status changes in order (written by the trigger of migration 0005, never by the app).
SELECT from_status, to_status, actor_role, reason, at
FROM referral_transitions
WHERE referral_id = $1
ORDER BY id
