-- A new signing secret ($3, sealed); the old one keeps signing for $4 seconds (0: retired at once).
UPDATE webhook_endpoints
SET previous_secret_sealed = CASE WHEN $4 > 0 THEN secret_sealed END,
    previous_secret_expires_at = CASE WHEN $4 > 0 THEN now() + make_interval(secs => $4) END,
    secret_sealed = $3, updated_at = now()
WHERE id = $1 AND partner_id = $2 AND state <> 'deleted'
RETURNING previous_secret_expires_at
