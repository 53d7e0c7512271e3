-- When the current master key's epoch began (NULL: not registered yet).
SELECT created_at FROM pii_key_epochs WHERE key_id = $1 AND destroyed_at IS NULL
