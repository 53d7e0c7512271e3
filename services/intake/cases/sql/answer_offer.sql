-- A case manager answers their own live offer (a decline: its code, and its sealed note if any). Returns
-- nothing when the offer is not theirs or no longer open, so the caller can tell 404 from 409.
UPDATE assignments
SET state = $3, responded_at = now(), decline_reason = $4, decline_note_id = $5
WHERE id = $1 AND case_manager_id = $2 AND state = 'offered'
RETURNING referral_id, respond_by
