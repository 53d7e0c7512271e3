-- Events written and not yet published, and the age of the oldest (the system's table: not personal).
SELECT count(*)::int AS n, extract(epoch FROM now() - min(created_at))::float8 AS age FROM outbox
