-- A group commit's serializing lock (shared.groupcommit): transaction-scoped, released by COMMIT or
-- ROLLBACK; {name} is a quoted literal put in by the code (trusted, never input).
SELECT pg_advisory_xact_lock(hashtext({name}))
