-- Steps past their due time, uncompleted, that nobody was told of yet (each is escalated once: the
-- sweep marks it in the transaction that writes the event). SKIP LOCKED keeps intakes apart.
SELECT s.referral_id, s.code, s.due_at
FROM protocol_steps s JOIN referrals r ON r.id = s.referral_id
WHERE s.completed_at IS NULL AND s.escalated_at IS NULL AND s.due_at IS NOT NULL AND s.due_at <= $1
  AND r.status NOT IN ('withdrawn', 'closed')
ORDER BY s.due_at
LIMIT $2
FOR UPDATE OF s SKIP LOCKED
