-- Intake's API-key lookup (authenticate_api_keys.sql: the function once per hash of `unnest($1)`) was
-- planned again on every call (pg_stat_statements: plans = calls, 32 µs of planning per referral at
-- 500/s, the only services' statement re-planned). A generic plan of unnest($1) counts on 10 elements,
-- a custom one on the real one or two; with the default estimate of a PL/pgSQL function (1,000 rows,
-- cost 100 a call) the generic plan always looked dearer than a custom one with its planning included,
-- so the plan cache never kept it. The function returns one row at most (a key is unique) and does one
-- indexed lookup: say so, and the generic plan wins after the plan cache's five custom tries.
ALTER FUNCTION refnet_authenticate_api_key(bytea) ROWS 1 COST 10;
