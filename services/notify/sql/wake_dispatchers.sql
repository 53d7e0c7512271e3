-- Wake every notify process's dispatcher once the transaction commits.
SELECT pg_notify($1, '')
