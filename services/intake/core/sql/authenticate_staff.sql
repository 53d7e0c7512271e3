-- The account behind a staff token (migration 0060): no row when it is deactivated, its partner is, or
-- the token's version is older than the account's. One autocommit statement, acting as the system.
SELECT role, region, partner_id, password_change_required FROM refnet_authenticate_staff($1::uuid, $2::int)
