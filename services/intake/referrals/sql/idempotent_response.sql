-- The response recorded for a partner's Idempotency-Key, and the hash of the body it answered.
SELECT request_hash, status_code, response_body, referral_id
FROM idempotency_keys
WHERE partner_id = $1 AND key = $2
