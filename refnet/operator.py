"""Operator commands: PII master-key rotation, audit verification, partner API keys."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import msgspec

from refnet.devpart import INSTALL
from services.intake.partners import apikeys
from shared import audit
from shared.config import Settings
from shared.crypto import KeyRing, generate_master_key, read_keyring_file, write_keyring_file
from shared.db import Identity

__all__ = ["admin_dsn", "apikey_command", "audit_verify", "keyring_path", "rotate_master_key"]

OPERATOR = Identity(role="system", actor_id="cli")


def admin_dsn(settings: Settings, data_dir: Path) -> str:
    """Where operator commands connect: the configured URL, else the embedded server of `refnet up`."""
    if settings.migrate_database_url or settings.database_url:
        return settings.migrate_database_url or settings.database_url
    try:
        from refnet_dev.embedded import EmbeddedPostgres
    except ImportError:
        raise SystemExit(
            f"no database: set REFNET_DATABASE_URL ({INSTALL} for the embedded server of `refnet up`)"
        ) from None
    pg = EmbeddedPostgres(data_dir / "postgres")
    if not pg.is_running():
        raise SystemExit(f"no database: set REFNET_DATABASE_URL or start `refnet up --data-dir {data_dir}`")
    return pg.uri()


def keyring_path(settings: Settings, data_dir: Path) -> Path:
    path = (
        Path(settings.pii_keyring_file)
        if settings.pii_keyring_file
        else data_dir / "secrets" / "pii_keyring.json"
    )
    if not path.exists():
        raise SystemExit(f"no keyring file at {path} (set REFNET_PII_KEYRING_FILE)")
    return path


async def _system(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "SELECT set_config('app.role', 'system', true), set_config('app.actor_id', 'cli', true)"
    )


async def rotate_master_key(
    dsn: str, path: Path, retire: bool = False, batch: int = 500
) -> dict[str, object]:
    """Add a new current master key, re-wrap every data key under it; optionally drop unused old keys."""
    doc = read_keyring_file(path)
    numbers = [int(k[1:]) for k in doc.keys if k[1:].isdigit()]
    new_id = f"k{max(numbers, default=0) + 1}"
    doc.keys[new_id] = generate_master_key()
    doc.current = new_id
    # The file first: a crash after this leaves both keys available, so nothing becomes unreadable.
    write_keyring_file(path, doc)
    ring = KeyRing(doc.keys, new_id)
    conn = await asyncpg.connect(dsn)
    rewrapped = 0
    try:
        while True:
            async with conn.transaction():
                await _system(conn)
                rows = await conn.fetch(
                    "SELECT referral_id, key_id, wrapped_key FROM referral_keys WHERE key_id <> $1"
                    " LIMIT $2 FOR UPDATE SKIP LOCKED",
                    new_id,
                    batch,
                )
                if not rows:
                    break
                updates = []
                for r in rows:
                    kid, wrapped = ring.rewrap(
                        r["key_id"], bytes(r["wrapped_key"]), str(r["referral_id"]).encode()
                    )
                    updates.append((kid, wrapped, r["referral_id"]))
                await conn.executemany(
                    "UPDATE referral_keys SET key_id = $1, wrapped_key = $2, rewrapped_at = now()"
                    " WHERE referral_id = $3",
                    updates,
                )
                rewrapped += len(updates)
        retired: list[str] = []
        async with conn.transaction():
            await _system(conn)
            # Webhook signing secrets are sealed under the same master keys.
            from services.notify import store

            secrets_rewrapped = await store.rewrap_secrets(conn, ring)
            if retire:
                used = {r["key_id"] for r in await conn.fetch("SELECT DISTINCT key_id FROM referral_keys")}
                used |= await store.secret_key_ids(conn)
                retired = [k for k in doc.keys if k != new_id and k not in used]
                for k in retired:
                    del doc.keys[k]
                write_keyring_file(path, doc)
            await audit.record(
                conn,
                OPERATOR,
                "keys.rotate",
                "master_key",
                new_id,
                {"rewrapped": rewrapped, "webhook_secrets_rewrapped": secrets_rewrapped, "retired": retired},
            )
    finally:
        await conn.close()
    return {"current": new_id, "rewrapped": rewrapped, "retired": retired, "keys": sorted(doc.keys)}


async def audit_verify(dsn: str, key: bytes, anchors: list[audit.Anchor]) -> audit.VerifyResult:
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await _system(conn)
            return await audit.verify(conn, key, anchors)
    finally:
        await conn.close()


async def apikey_command(
    dsn: str,
    action: str,
    *,
    partner: str | None = None,
    key_id: str | None = None,
    label: str = "",
    grace_hours: float = 24.0,
    reason: str = "",
) -> str:
    """Run one API-key action and return JSON text for the terminal."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await _system(conn)
            result: object
            if action == "list":
                result = await apikeys.list_keys(conn, partner)
            elif action == "create":
                if not partner:
                    raise SystemExit("refnet apikeys create: --partner is required")
                result = await apikeys.create_key(conn, OPERATOR, partner, label)
            elif action == "revoke":
                result = await apikeys.revoke_key(conn, OPERATOR, str(key_id), reason)
            else:
                result = await apikeys.rotate_key(conn, OPERATOR, str(key_id), int(grace_hours * 3600))
    except LookupError as exc:
        raise SystemExit(f"refnet apikeys {action}: {exc}") from None
    finally:
        await conn.close()
    return msgspec.json.format(msgspec.json.encode(result)).decode()
