-- A referral's wrapped data key (as the system: the caller was authorised by the route; NULL once shredded).
SELECT key_id, wrapped_key FROM referral_keys WHERE referral_id = $1
