-- The case manager who has the referral now: an open offer or the accepted case.
SELECT case_manager_id FROM assignments
WHERE referral_id = $1 AND state IN ('offered', 'accepted')
ORDER BY offered_at DESC
LIMIT 1
