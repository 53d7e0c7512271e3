-- Serialises one partner's registrations so the endpoint cap cannot be raced past.
SELECT pg_advisory_xact_lock(hashtext('webhooks:' || $1))
