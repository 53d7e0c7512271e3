-- The offer (its place already taken) and the referral moved to `assigned`, in one statement: the
-- same two writes as insert_offer.sql and mark_assigned.sql, one round trip.
WITH offer AS (
    INSERT INTO assignments (id, referral_id, case_manager_id, state, offered_at, respond_by, attempt)
    VALUES ($1, $2, $3, 'offered', $4, $5, $6)
    RETURNING referral_id
)
UPDATE referrals SET status = 'assigned', assigned_at = $4, updated_at = $4, unroutable_reason = NULL, queued_at = NULL
WHERE id = (SELECT referral_id FROM offer)
