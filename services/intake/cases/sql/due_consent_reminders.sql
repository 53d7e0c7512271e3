-- Consents expiring within $1 days, still in force, on a case a case manager accepted, with no reminder
-- yet at some lead of $2 (days) that is now due for this expiry date. SKIP LOCKED keeps intakes apart.
SELECT c.referral_id, c.expires_at, r.region,
       (SELECT a.case_manager_id FROM assignments a
        WHERE a.referral_id = c.referral_id AND a.state = 'accepted'
        ORDER BY a.responded_at DESC NULLS LAST LIMIT 1) AS case_manager_id,
       ARRAY(SELECT d FROM unnest($2::int[]) AS d
             WHERE c.expires_at <= now() + make_interval(days => d)
               AND NOT EXISTS (SELECT 1 FROM consent_reminders m
                               WHERE m.referral_id = c.referral_id AND m.lead_days = d
                                 AND m.expires_at = c.expires_at)) AS due
FROM consents c JOIN referrals r ON r.id = c.referral_id
WHERE c.withdrawn_at IS NULL AND c.expires_at > now() AND c.expires_at <= now() + make_interval(days => $1)
  AND r.pii_shredded_at IS NULL AND r.status IN ('accepted', 'engaged', 'closed')
  AND EXISTS (SELECT 1 FROM unnest($2::int[]) AS d
              WHERE c.expires_at <= now() + make_interval(days => d)
                AND NOT EXISTS (SELECT 1 FROM consent_reminders m
                                WHERE m.referral_id = c.referral_id AND m.lead_days = d
                                  AND m.expires_at = c.expires_at))
ORDER BY c.expires_at
LIMIT $3
FOR UPDATE OF c SKIP LOCKED
