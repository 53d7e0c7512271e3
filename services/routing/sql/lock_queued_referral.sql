-- A referral still waiting in the queue for a case manager, unless another worker has it right now.
SELECT * FROM referrals
WHERE id = $1 AND status = 'unroutable' AND unroutable_reason = 'no_eligible_case_manager'
FOR NO KEY UPDATE SKIP LOCKED
