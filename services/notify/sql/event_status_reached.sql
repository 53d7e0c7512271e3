-- Whether the referral ever reached status $2 (the history only the status trigger writes).
SELECT EXISTS (SELECT 1 FROM referral_transitions WHERE referral_id = $1 AND to_status = $2)
