"""Reading a referral's identifying details: decrypt under the caller's RLS identity, audit every read."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import msgspec
from litestar import Request, get, post

from services.intake.auth import require_staff, resolve_caller
from services.intake.problems import Problem
from services.intake.schemas import BreakGlassIn, PiiView
from shared import audit
from shared.crypto import Sealed, UnknownKeyError, load_keyring
from shared.db import Identity, transaction

__all__ = ["break_glass", "read_details"]


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, "No such referral.") from None


async def _open(
    request: Request[Any, Any, Any],
    conn: asyncpg.Connection,
    rid: uuid.UUID,
    identity: Identity,
    action: str,
    detail: dict[str, Any],
) -> PiiView:
    # Row-level security decides what this identity can see; an empty result means not yours.
    ref = await conn.fetchrow("SELECT id, pii_shredded_at FROM referrals WHERE id = $1", rid)
    if ref is None:
        raise Problem(404, "No such referral.")
    if ref["pii_shredded_at"] is not None:
        raise Problem(
            410,
            "The youth's identifying details were destroyed (consent withdrawn or retention ended).",
            slug="pii-destroyed",
        )
    row = await conn.fetchrow(
        "SELECT p.nonce, p.ciphertext, k.key_id, k.wrapped_key FROM referral_pii p"
        " JOIN referral_keys k USING (referral_id) WHERE p.referral_id = $1",
        rid,
    )
    if row is None:
        raise Problem(404, "No such referral.")
    sealed = Sealed(row["key_id"], bytes(row["wrapped_key"]), bytes(row["nonce"]), bytes(row["ciphertext"]))
    state = request.app.state
    try:
        plain = state.keyring.open(sealed, str(rid).encode())
    except UnknownKeyError:
        # `refnet keys rotate` may have re-wrapped this key under a master key added after we started.
        settings = state.settings
        state.keyring = load_keyring(
            settings.pii_keyring_file, settings.pii_master_key, settings.pii_master_key_id
        )
        plain = state.keyring.open(sealed, str(rid).encode())
    consent = await conn.fetchrow(
        "SELECT method, scope, obtained_at, expires_at, withdrawn_at FROM consents WHERE referral_id = $1",
        rid,
    )
    await audit.record(conn, identity, action, "referral", str(rid), detail)
    data = msgspec.json.decode(plain)
    return PiiView(
        referral_id=str(rid),
        youth=data.get("youth") or {},
        location=data.get("location") or {},
        notes=data.get("notes"),
        consent=dict(consent) if consent else {},
    )


@get(
    "/v1/referrals/{referral_id:str}/details",
    guards=[require_staff("case_manager")],
    tags=["referrals"],
    summary="The youth's identifying details, for the case manager who has the referral (audited)",
)
async def read_details(request: Request[Any, Any, Any], referral_id: str) -> PiiView:
    caller = await resolve_caller(request)
    rid = _uuid(referral_id)
    async with transaction(request.app.state.pool, caller.identity) as conn:
        return await _open(request, conn, rid, caller.identity, "pii.read", {})


@post(
    "/v1/admin/referrals/{referral_id:str}/break-glass",
    guards=[require_staff("admin")],
    status_code=200,
    tags=["admin"],
    summary="Emergency access to a youth's details by an admin, with a stated reason (audited)",
)
async def break_glass(request: Request[Any, Any, Any], referral_id: str, data: BreakGlassIn) -> PiiView:
    caller = await resolve_caller(request)
    rid = _uuid(referral_id)
    async with transaction(request.app.state.pool, caller.identity) as conn:
        # Only inside this transaction does the admin's identity reach PII (see refnet_break_glass()).
        await conn.execute("SELECT set_config('app.break_glass', 'on', true)")
        return await _open(request, conn, rid, caller.identity, "pii.break_glass", {"reason": data.reason})
