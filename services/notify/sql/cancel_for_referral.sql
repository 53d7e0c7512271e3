-- Stop every waiting outbound message about a referral (consent withdrawn).
UPDATE deliveries SET state = 'cancelled', last_error = $2, updated_at = now()
WHERE referral_id = $1 AND state IN ('pending', 'failed')
RETURNING channel
