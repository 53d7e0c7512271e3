-- The oldest offer past its deadline that no other worker holds right now.
SELECT id, referral_id, case_manager_id FROM assignments
WHERE state = 'offered' AND respond_by < now()
ORDER BY respond_by LIMIT 1
FOR UPDATE SKIP LOCKED
