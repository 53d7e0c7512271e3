-- Partners' API keys, by their hashes ($1: every key the requests of one moment carry, each once; see
-- shared.coalesce). One autocommit statement (migration 0009): the function acts as the system for
-- the lookup alone and touches last_used_at at most once a minute, so authentication rarely writes.
-- A hash without a row is not a valid key.
SELECT h, a.key_id, a.partner_id
FROM unnest($1::bytea[]) AS h
CROSS JOIN LATERAL refnet_authenticate_api_key(h) AS a
