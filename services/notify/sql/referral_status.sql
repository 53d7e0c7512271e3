SELECT status FROM referrals WHERE id = $1
