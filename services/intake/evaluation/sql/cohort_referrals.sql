-- Every referral as the evaluation reads it: routing facts and coded intake attributes, no PII.
-- Read under the caller's identity (evaluator or admin): row-level security applies.
SELECT r.id, coalesce(encode(r.youth_key, 'hex'), r.id::text) AS youth_key, r.received_at, r.region,
       r.age_years, r.urgency, r.needs, r.status, r.close_reason, r.intake, r.engaged_at, r.closed_at
FROM referrals r
ORDER BY r.received_at, r.id
