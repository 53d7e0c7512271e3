-- The cohort's child-protection protocol timings (issue 18): minutes from receipt to the in-person
-- advocate response, and the medical exam's coded outcome, where completed. Codes and times only.
SELECT s.referral_id, s.code, s.outcome,
       extract(epoch FROM (s.completed_at - r.received_at)) / 60.0 AS minutes
FROM protocol_steps s JOIN referrals r ON r.id = s.referral_id
WHERE s.referral_id = ANY ($1::uuid[]) AND s.completed_at IS NOT NULL
  AND s.code IN ('advocate_response', 'medical_exam_offered')
