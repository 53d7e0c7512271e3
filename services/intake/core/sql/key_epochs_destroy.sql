-- Waits for sealers that passed the epoch check (they hold FOR SHARE), after which nothing new is wrapped by these keys.
UPDATE pii_key_epochs SET destroyed_at = now() WHERE key_id = ANY($1::text[]) AND destroyed_at IS NULL
