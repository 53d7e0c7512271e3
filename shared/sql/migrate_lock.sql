-- One migrating process at a time (a session lock: it holds across no-transaction migrations).
SELECT pg_advisory_lock($1)
