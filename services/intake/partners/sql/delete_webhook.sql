-- Deletes the partner's endpoint; the secrets go with it (a deleted endpoint keeps nothing that signs).
UPDATE webhook_endpoints
SET state = 'deleted', deleted_at = now(), updated_at = now(),
    secret_sealed = '', previous_secret_sealed = NULL, previous_secret_expires_at = NULL
WHERE id = $1 AND partner_id = $2 AND state <> 'deleted'
RETURNING 1
