-- An automatic routing decision and the record that explains it (shared/decisions.py).
INSERT INTO routing_decisions (id, referral_id, decided_at, outcome, chosen_id, detail, policy_version)
VALUES ($1, $2, $3, $4, $5, $6, $7)
