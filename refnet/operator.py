"""Operator commands: PII master-key rotation, audit verification, partner API keys."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import msgspec

from refnet.devpart import INSTALL
from services.intake.core import keyrotation
from services.intake.core.keyrotation import RotationResult
from services.intake.partners import apikeys
from shared import audit
from shared.config import Settings
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


async def rotate_master_key(dsn: str, path: Path, destroy_previous: bool = False) -> RotationResult:
    """Start a new master key epoch, re-wrap every data key under it; optionally destroy older epochs."""
    conn = await asyncpg.connect(dsn)
    try:
        result = await keyrotation.rotate(conn, path, OPERATOR, destroy_previous=destroy_previous)
    finally:
        await conn.close()
    if result is None:
        raise SystemExit("refnet keys rotate: another rotation is running; try again when it has finished")
    return result


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
