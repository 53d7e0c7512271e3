-- The step's one escalation: when, and the protocol.overdue event that carries it.
UPDATE protocol_steps SET escalated_at = $3, escalation_event_id = $4
WHERE referral_id = $1 AND code = $2 AND escalated_at IS NULL
