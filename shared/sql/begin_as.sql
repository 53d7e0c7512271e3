-- BEGIN and the caller's identity in one simple query (one round trip): transaction-local settings
-- that row-level security and audit read, gone at commit. The values are quoted literals put in by
-- shared.db.transaction; trusted setup (SET LOCAL ...) may follow.
BEGIN; SELECT set_config('app.role', {role}, true), set_config('app.actor_id', {actor}, true), set_config('app.partner_id', {partner}, true), set_config('app.region', {region}, true)
