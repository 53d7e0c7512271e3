-- What the database says of the referral an event names (notify never takes the event's word for it),
-- and of the assignment it names, if any ($2 may be NULL): one round trip for both. `assignment_state`
-- is NULL when there is no such assignment (the column itself is NOT NULL).
SELECT r.partner_id, r.status, r.region, r.urgency,
       a.referral_id AS assignment_referral_id, a.case_manager_id AS assignment_case_manager_id,
       a.state AS assignment_state
FROM referrals r
LEFT JOIN assignments a ON a.id = $2
WHERE r.id = $1
