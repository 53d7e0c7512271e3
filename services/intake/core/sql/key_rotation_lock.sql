-- One key rotation at a time across every process (CLI and services), for the whole rotation.
SELECT pg_try_advisory_lock($1)
