-- Every routing decision about a referral, in order, with its stored record (shared/decisions.py).
SELECT decided_at, kind, outcome, chosen_id, detail, policy_version, actor_id, reason
FROM routing_decisions
WHERE referral_id = $1
ORDER BY decided_at, id
