"""Partner API keys: create (shown once), list, revoke, rotate with overlap; for the admin API and the CLI."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from shared import audit
from shared.credentials import hash_api_key, new_api_key
from shared.db import Identity, load_sql

__all__ = ["ApiKeyInfo", "NewApiKey", "create_key", "list_keys", "revoke_key", "rotate_key"]

_PKG = "services.intake.partners"
_API_KEYS = load_sql(_PKG, "api_keys")
_API_KEY = load_sql(_PKG, "api_key")
_PARTNER_EXISTS = load_sql(_PKG, "partner_exists")
_INSERT_API_KEY = load_sql(_PKG, "insert_api_key")
_REVOKE_API_KEY = load_sql(_PKG, "revoke_api_key")
_EXPIRE_API_KEY = load_sql(_PKG, "expire_api_key")


class ApiKeyInfo(msgspec.Struct, kw_only=True):
    id: str
    partner_id: str
    prefix: str
    label: str
    created_at: datetime
    last_used_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    active: bool


class NewApiKey(msgspec.Struct, kw_only=True):
    id: str
    partner_id: str
    api_key: str
    prefix: str
    label: str


def _info(r: asyncpg.Record) -> ApiKeyInfo:
    return ApiKeyInfo(
        id=str(r["id"]),
        partner_id=str(r["partner_id"]),
        prefix=r["prefix"],
        label=r["label"],
        created_at=r["created_at"],
        last_used_at=r["last_used_at"],
        expires_at=r["expires_at"],
        revoked_at=r["revoked_at"],
        active=r["active"],
    )


async def list_keys(conn: asyncpg.Connection, partner_id: str | None = None) -> list[ApiKeyInfo]:
    rows = await conn.fetch(_API_KEYS, partner_id)
    return [_info(r) for r in rows]


async def create_key(
    conn: asyncpg.Connection, actor: Identity, partner_id: str, label: str = ""
) -> NewApiKey:
    if await conn.fetchval(_PARTNER_EXISTS, partner_id) is None:
        raise LookupError("no such partner")
    key = new_api_key()
    kid = uuid.uuid4()
    await conn.execute(
        _INSERT_API_KEY,
        kid,
        partner_id,
        key[:8],
        hash_api_key(key),
        label,
    )
    await audit.record(conn, actor, "apikey.create", "api_key", str(kid), {"partner_id": partner_id})
    return NewApiKey(id=str(kid), partner_id=partner_id, api_key=key, prefix=key[:8], label=label)


async def revoke_key(conn: asyncpg.Connection, actor: Identity, key_id: str, reason: str = "") -> ApiKeyInfo:
    row = await conn.fetchrow(_REVOKE_API_KEY, key_id, reason or None)
    if row is None:
        raise LookupError("no such key")
    await audit.record(conn, actor, "apikey.revoke", "api_key", key_id, {})
    info = await conn.fetchrow(_API_KEY, key_id)
    assert info is not None
    return _info(info)


async def rotate_key(
    conn: asyncpg.Connection, actor: Identity, key_id: str, grace_seconds: int = 24 * 3600
) -> NewApiKey:
    """A new key for the same partner; the old one keeps working for ``grace_seconds`` (overlap)."""
    old = await conn.fetchrow(_EXPIRE_API_KEY, key_id, grace_seconds)
    if old is None:
        raise LookupError("no such active key")
    new = await create_key(conn, actor, str(old["partner_id"]), old["label"])
    await audit.record(conn, actor, "apikey.rotate", "api_key", key_id, {"replaced_by": new.id})
    return new
