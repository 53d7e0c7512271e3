-- Who had the referral last (an open or accepted offer, or one withdrawn by hand).
SELECT case_manager_id FROM assignments
WHERE referral_id = $1 AND state IN ('offered', 'accepted', 'cancelled')
ORDER BY offered_at DESC
LIMIT 1
