-- A partner's API key, by its hash. One autocommit statement (migration 0009): the function acts as the
-- system for the lookup alone and touches last_used_at at most once a minute, so authentication rarely
-- writes.
SELECT key_id, partner_id FROM refnet_authenticate_api_key($1)
