-- Every offer of a referral, in order.
SELECT id, case_manager_id, state, offered_at, respond_by, responded_at
FROM assignments
WHERE referral_id = $1
ORDER BY offered_at, id
