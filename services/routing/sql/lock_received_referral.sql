-- A referral still waiting for its first routing, unless another worker has it right now.
SELECT * FROM referrals WHERE id = $1 AND status = 'received' FOR NO KEY UPDATE SKIP LOCKED
