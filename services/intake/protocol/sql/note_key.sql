-- The referral's wrapped data key, for sealing a step's note (see refnet_protocol_key in 0070).
SELECT key_id, wrapped_key FROM refnet_protocol_key($1)
