-- Completes a step: when, by whom (and in which role), its coded outcome and its sealed reference and note.
UPDATE protocol_steps
SET completed_at = $3, completed_by = $4, completed_role = $5, outcome = $6, has_reference = $7, has_note = $10,
    sealed_nonce = $8, sealed_text = $9
WHERE referral_id = $1 AND code = $2 AND completed_at IS NULL
RETURNING code
