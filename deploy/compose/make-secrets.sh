#!/bin/sh
# Generates the secrets deploy/compose.yaml reads, once (existing files are kept). Passwords are hex so
# they need no escaping inside a URL. Back up secrets/pii_keyring.json: without it no PII can be read,
# also not from a database backup.
set -eu
dir=$(dirname "$0")/secrets
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
rand() { python3 -c "import secrets; print(secrets.token_hex($1))"; }
[ -f "$dir/postgres_password" ] || rand 24 > "$dir/postgres_password"
[ -f "$dir/refnet_app_password" ] || rand 24 > "$dir/refnet_app_password"
[ -f "$dir/database_url" ] || \
  echo "postgresql://refnet_app:$(cat "$dir/refnet_app_password")@postgres:5432/refnet" > "$dir/database_url"
[ -f "$dir/migrate_database_url" ] || \
  echo "postgresql://refnet_owner:$(cat "$dir/postgres_password")@postgres:5432/refnet" > "$dir/migrate_database_url"
[ -f "$dir/secret_key" ] || rand 32 > "$dir/secret_key"
[ -f "$dir/audit_key" ] || rand 32 > "$dir/audit_key"
[ -f "$dir/pii_keyring.json" ] || python3 -c "
import base64, json, os
print(json.dumps({'current': 'k1', 'keys': {'k1': base64.b64encode(os.urandom(32)).decode()}}))
" > "$dir/pii_keyring.json"
# One NATS user per service; nats-server reads the passwords from nats.env (deploy/nats/refnet-auth.conf).
for svc in intake routing notify; do
  [ -f "$dir/nats_${svc}_password" ] || rand 24 > "$dir/nats_${svc}_password"
done
[ -f "$dir/nats.env" ] || {
  for svc in intake routing notify; do
    echo "REFNET_NATS_$(echo "$svc" | tr a-z A-Z)_PASSWORD=$(cat "$dir/nats_${svc}_password")"
  done
} > "$dir/nats.env"
# Compose (without swarm) bind-mounts each file as it is: the containers' own users (refnet 10001,
# postgres 999) must be able to read it. The 0700 directory keeps other host users out.
chmod 644 "$dir"/*
echo "secrets in $dir"
