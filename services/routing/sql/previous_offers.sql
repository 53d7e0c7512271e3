-- Case managers who declined or let an offer of this referral expire.
SELECT case_manager_id FROM assignments WHERE referral_id = $1 AND state IN ('declined', 'expired')
