-- A referral's steps as the caller may see them (row-level security decides), in protocol order.
SELECT s.code, s.position, s.protocol_version, s.roles, s.clock_from, s.clock_minutes, s.reference_required,
       s.outcomes, s.due_at, s.completed_at, s.completed_by, s.completed_role, s.outcome, s.has_reference, s.has_note,
       s.sealed_nonce, s.sealed_text, s.escalated_at
FROM protocol_steps s
WHERE s.referral_id = $1
ORDER BY s.position
