"""Partners and their API keys as an admin manages them: lookups answer "no such ..." for unknown ids."""

from __future__ import annotations

import uuid

import asyncpg

from services.intake.core.auth import Caller
from services.intake.core.dependencies import CallerDb
from services.intake.core.problems import Problem
from services.intake.partners import apikeys
from services.intake.partners.schemas import PartnerCreated, PartnerView
from shared import audit
from shared.db import Identity, load_sql

__all__ = [
    "create_key",
    "create_partner",
    "create_partner_in",
    "list_partners",
    "partner_keys",
    "partner_listing",
    "revoke_key",
    "rotate_key",
    "set_partner_active",
]

_PKG = "services.intake.partners"
_PARTNERS = load_sql(_PKG, "partners")
_PARTNER_EXISTS = load_sql(_PKG, "partner_exists")
_INSERT_PARTNER = load_sql(_PKG, "insert_partner")
_SET_PARTNER_ACTIVE = load_sql(_PKG, "set_partner_active")


def _uuid_or_404(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Problem(404, f"No such {what}.") from None


async def list_partners(conn: asyncpg.Connection) -> list[PartnerView]:
    """Partners and how many of their keys work now."""
    return [
        PartnerView(str(r["id"]), r["name"], r["kind"], r["active"], r["partner_active"])
        for r in await conn.fetch(_PARTNERS)
    ]


async def create_partner(conn: asyncpg.Connection, identity: Identity, name: str) -> PartnerCreated:
    """A new partner and its first API key (shown once); audited by id."""
    found = await conn.fetchval(_INSERT_PARTNER, uuid.uuid4(), name.strip())
    if found is None:
        raise Problem(
            409, "A partner of that name exists.", errors=[{"field": "name", "message": "is taken"}]
        )
    pid = str(found)
    await audit.record(conn, identity, "partner.create", "partner", pid)
    key = await apikeys.create_key(conn, identity, pid, "first key")
    return PartnerCreated(pid, name.strip(), key.api_key)


async def set_partner_active(
    conn: asyncpg.Connection, identity: Identity, partner_id: str, active: bool
) -> PartnerView:
    """Deactivate (its keys and partner users get 401 at once) or reactivate a partner."""
    pid = _uuid_or_404(partner_id, "partner")
    row = await conn.fetchrow(_SET_PARTNER_ACTIVE, pid, active)
    if row is None:
        raise Problem(404, "No such partner.")
    await audit.record(
        conn, identity, "partner.reactivate" if active else "partner.deactivate", "partner", pid
    )
    view = next((p for p in await list_partners(conn) if p.id == pid), None)
    if view is None:  # pragma: no cover - updated in this transaction
        raise Problem(404, "No such partner.")
    return view


async def partner_keys(conn: asyncpg.Connection, partner_id: str) -> list[apikeys.ApiKeyInfo]:
    pid = _uuid_or_404(partner_id, "partner")
    if await conn.fetchval(_PARTNER_EXISTS, pid) is None:
        raise Problem(404, "No such partner.")
    return await apikeys.list_keys(conn, pid)


async def create_key(
    conn: asyncpg.Connection, caller: Caller, partner_id: str, label: str
) -> apikeys.NewApiKey:
    pid = _uuid_or_404(partner_id, "partner")
    try:
        return await apikeys.create_key(conn, caller.identity, pid, label)
    except LookupError:
        raise Problem(404, "No such partner.") from None


async def revoke_key(
    conn: asyncpg.Connection, caller: Caller, key_id: str, reason: str
) -> apikeys.ApiKeyInfo:
    kid = _uuid_or_404(key_id, "key")
    try:
        return await apikeys.revoke_key(conn, caller.identity, kid, reason)
    except LookupError:
        raise Problem(404, "No such key.") from None


async def rotate_key(conn: asyncpg.Connection, caller: Caller, key_id: str, grace: int) -> apikeys.NewApiKey:
    kid = _uuid_or_404(key_id, "key")
    try:
        return await apikeys.rotate_key(conn, caller.identity, kid, grace)
    except LookupError:
        raise Problem(404, "No such active key.") from None


async def create_partner_in(db: CallerDb, name: str) -> PartnerCreated:
    """``create_partner`` in a transaction of its own (the web page renders the list after it)."""
    async with db.transaction() as conn:
        return await create_partner(conn, db.identity, name)


async def partner_listing(db: CallerDb) -> list[PartnerView]:
    async with db.transaction() as conn:
        return await list_partners(conn)
