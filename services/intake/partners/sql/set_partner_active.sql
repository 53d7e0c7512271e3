-- Deactivate ($2 false: its keys and partner users get 401 at once) or reactivate a partner (NULL: no such
-- partner). Deactivating twice keeps the first time.
UPDATE partners
SET deactivated_at = CASE WHEN $2 THEN NULL ELSE coalesce(deactivated_at, now()) END
WHERE id = $1
RETURNING id
