-- A manual assignment's decision record: who decided, and their reason (staff-written text that stays
-- here, out of events and audit detail).
INSERT INTO routing_decisions (id, referral_id, decided_at, outcome, chosen_id, detail, kind, policy_version,
                               actor_id, reason)
VALUES ($1, $2, $3, 'assigned', $4, $5, 'manual', $6, $7, $8)
