-- A migration applied ($4 NULL), or a no-transaction one started or advanced ($4 statements done).
INSERT INTO schema_migrations (version, name, checksum, partial_statements) VALUES ($1, $2, $3, $4)
ON CONFLICT (version) DO UPDATE SET partial_statements = excluded.partial_statements, applied_at = now()
