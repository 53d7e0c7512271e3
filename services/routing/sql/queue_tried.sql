-- A queued referral the drain tried and left waiting: what it was tried against ($2 the snapshot the
-- try read with, as text; $3 the policy version), so queue_to_drain.sql skips it until one changes.
INSERT INTO queue_tries (referral_id, referral_xmin, tried_snapshot, policy_version)
SELECT id, xmin, $2::text::pg_snapshot, $3 FROM referrals WHERE id = $1
ON CONFLICT (referral_id) DO UPDATE
SET referral_xmin = EXCLUDED.referral_xmin, tried_snapshot = EXCLUDED.tried_snapshot,
    policy_version = EXCLUDED.policy_version, tried_at = now()
