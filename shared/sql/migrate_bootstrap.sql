-- The runner's own bookkeeping, before any migration. partial_statements: NULL once a migration is
-- applied in full; a count while a no-transaction migration is under way (or was interrupted): the
-- number of its statements that took effect, so a later run resumes after them.
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    checksum text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE schema_migrations ADD COLUMN IF NOT EXISTS partial_statements integer;
