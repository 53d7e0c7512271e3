-- The data key of the referral behind an offer to the caller (row-level security: while the offer is
-- theirs), to seal their words with it.
SELECT k.referral_id, k.key_id, k.wrapped_key
FROM assignments a JOIN referral_keys k ON k.referral_id = a.referral_id
WHERE a.id = $1 AND a.case_manager_id = $2 AND a.state = 'offered'
