UPDATE referral_keys SET key_id = $1, wrapped_key = $2, rewrapped_at = now() WHERE referral_id = $3
