"""Partner API keys: create (shown once), list, revoke, rotate with overlap; shared by the CLI and admin API."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec

from shared import audit
from shared.credentials import API_KEY_PREFIX, hash_api_key, new_api_key
from shared.db import Identity

__all__ = [
    "API_KEY_PREFIX",
    "ApiKeyInfo",
    "NewApiKey",
    "create_key",
    "hash_api_key",
    "list_keys",
    "new_api_key",
    "revoke_key",
    "rotate_key",
]


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


_SELECT = (
    "SELECT id, partner_id, prefix, label, created_at, last_used_at, expires_at, revoked_at,"
    " (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())) AS active FROM api_keys"
)


async def list_keys(conn: asyncpg.Connection, partner_id: str | None = None) -> list[ApiKeyInfo]:
    rows = await conn.fetch(
        _SELECT + " WHERE ($1::uuid IS NULL OR partner_id = $1) ORDER BY partner_id, created_at", partner_id
    )
    return [_info(r) for r in rows]


async def create_key(
    conn: asyncpg.Connection, actor: Identity, partner_id: str, label: str = ""
) -> NewApiKey:
    if await conn.fetchval("SELECT 1 FROM partners WHERE id = $1", partner_id) is None:
        raise LookupError("no such partner")
    key = new_api_key()
    kid = uuid.uuid4()
    await conn.execute(
        "INSERT INTO api_keys (id, partner_id, prefix, key_hash, label) VALUES ($1, $2, $3, $4, $5)",
        kid,
        partner_id,
        key[:8],
        hash_api_key(key),
        label,
    )
    await audit.record(conn, actor, "apikey.create", "api_key", str(kid), {"partner_id": partner_id})
    return NewApiKey(id=str(kid), partner_id=partner_id, api_key=key, prefix=key[:8], label=label)


async def revoke_key(conn: asyncpg.Connection, actor: Identity, key_id: str, reason: str = "") -> ApiKeyInfo:
    row = await conn.fetchrow(
        "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()), revoked_reason = coalesce(revoked_reason, $2)"
        " WHERE id = $1 RETURNING id",
        key_id,
        reason or None,
    )
    if row is None:
        raise LookupError("no such key")
    await audit.record(conn, actor, "apikey.revoke", "api_key", key_id, {})
    info = await conn.fetchrow(_SELECT + " WHERE id = $1", key_id)
    assert info is not None
    return _info(info)


async def rotate_key(
    conn: asyncpg.Connection, actor: Identity, key_id: str, grace_seconds: int = 24 * 3600
) -> NewApiKey:
    """A new key for the same partner; the old one keeps working for ``grace_seconds`` (overlap)."""
    old = await conn.fetchrow(
        "UPDATE api_keys SET expires_at = least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => $2))"
        " WHERE id = $1 AND revoked_at IS NULL RETURNING partner_id, label",
        key_id,
        grace_seconds,
    )
    if old is None:
        raise LookupError("no such active key")
    new = await create_key(conn, actor, str(old["partner_id"]), old["label"])
    await audit.record(conn, actor, "apikey.rotate", "api_key", key_id, {"replaced_by": new.id})
    return new
