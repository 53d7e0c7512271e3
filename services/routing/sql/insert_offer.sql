-- An offer to a case manager whose place is already taken.
INSERT INTO assignments (id, referral_id, case_manager_id, state, offered_at, respond_by, attempt)
VALUES ($1, $2, $3, 'offered', $4, $5, $6)
