-- Every referral as the evaluation reads it: routing facts, the referring partner organisation's name
-- and coded intake attributes, no PII. Read under the caller's identity (evaluator or admin): row-level
-- security applies. Only youth whose consent covers `evaluation` now ($1): a youth who never gave it, or
-- withdrew (or let it expire unrenewed), appears in no report or export made afterwards.
SELECT r.id, coalesce(encode(r.youth_key, 'hex'), r.id::text) AS youth_key, r.received_at, r.region,
       p.name AS partner, r.age_years, r.urgency, r.needs, r.status, r.close_reason, r.intake,
       r.engaged_at, r.closed_at
FROM referrals r
LEFT JOIN partners p ON p.id = r.partner_id
WHERE refnet_consent_covers(r.id, $1)
ORDER BY r.received_at, r.id
