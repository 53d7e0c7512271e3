-- Follow-ups due within the lead time (or overdue) that nobody was reminded of and nobody recorded,
-- with who to remind: the case manager who accepted the case. SKIP LOCKED keeps intakes apart.
SELECT f.referral_id, f.point, f.due_on, r.do_not_contact, r.region,
       (SELECT a.case_manager_id FROM assignments a
        WHERE a.referral_id = f.referral_id AND a.state = 'accepted'
        ORDER BY a.responded_at DESC NULLS LAST LIMIT 1) AS case_manager_id
FROM followups f JOIN referrals r ON r.id = f.referral_id
WHERE f.reminded_at IS NULL AND f.completed_at IS NULL AND f.due_on <= $1
  AND r.status IN ('engaged', 'closed')
ORDER BY f.due_on
LIMIT $2
FOR UPDATE OF f SKIP LOCKED
