-- Indexes a failed or interrupted CREATE INDEX CONCURRENTLY leaves behind: present, never used, and
-- "IF NOT EXISTS" would silently keep them.
SELECT i.indexrelid::regclass::text AS name
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE NOT i.indisvalid AND n.nspname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1
