-- The referral's open offer, if any, locked: a manual assignment withdraws it.
SELECT id, case_manager_id FROM assignments WHERE referral_id = $1 AND state = 'offered' FOR UPDATE
