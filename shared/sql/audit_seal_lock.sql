-- One sealer at a time across all processes; the others skip this round.
SELECT pg_try_advisory_xact_lock($1)
