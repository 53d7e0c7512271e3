#!/bin/sh
# Runs once, when the postgres container initialises an empty data directory: creates the login role
# the refnet services use. Migrations (run as refnet_owner) grant it what it needs; row-level security
# applies to it because it is neither a superuser nor BYPASSRLS.
set -eu
password=$(cat /run/secrets/refnet_app_password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" --set "pw=$password" <<'EOSQL'
CREATE ROLE refnet_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD :'pw';
EOSQL
