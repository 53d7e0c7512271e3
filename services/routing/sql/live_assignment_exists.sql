SELECT 1 FROM assignments WHERE referral_id = $1 AND state IN ('offered', 'accepted')
