-- Consent withdrawn before engagement: the live offer (or acceptance) ends; its case manager is returned.
UPDATE assignments SET state = 'cancelled', responded_at = now()
WHERE referral_id = $1 AND state IN ('offered', 'accepted')
RETURNING case_manager_id
