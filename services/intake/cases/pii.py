"""Reading a referral's identifying details: decrypted under the caller's RLS identity, every read audited."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import msgspec

from services.intake.cases import notes
from services.intake.cases.schemas import PiiView
from services.intake.core.auth import Caller
from services.intake.core.keys import Keys
from services.intake.core.problems import Problem
from shared import audit
from shared.crypto import Sealed
from shared.db import load_sql

__all__ = ["break_glass", "read_details"]

_PKG = "services.intake.cases"
_PII_STATE = load_sql(_PKG, "pii_state")
_SEALED_PII = load_sql(_PKG, "sealed_pii")
_CONSENT = load_sql(_PKG, "consent")
_ENABLE_BREAK_GLASS = load_sql(_PKG, "enable_break_glass")


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, "No such referral.") from None


async def read_details(conn: asyncpg.Connection, caller: Caller, keys: Keys, referral_id: str) -> PiiView:
    """The youth's details, for the case manager who has the referral (row-level security decides)."""
    return await _open(conn, caller, keys, _uuid(referral_id), "pii.read", {})


async def break_glass(
    conn: asyncpg.Connection, caller: Caller, keys: Keys, referral_id: str, reason: str
) -> PiiView:
    """An admin's emergency access, with a stated reason: sealed with the referral's data key (it may name
    the youth) and named by id in the audit row."""
    rid = _uuid(referral_id)
    await conn.execute(_ENABLE_BREAK_GLASS)
    return await _open(conn, caller, keys, rid, "pii.break_glass", {}, reason=reason)


async def _open(
    conn: asyncpg.Connection,
    caller: Caller,
    keys: Keys,
    rid: uuid.UUID,
    action: str,
    detail: dict[str, Any],
    *,
    reason: str = "",
) -> PiiView:
    # Row-level security decides what this identity can see; an empty result means not yours.
    ref = await conn.fetchrow(_PII_STATE, rid)
    if ref is None:
        raise Problem(404, "No such referral.")
    if ref["pii_shredded_at"] is not None:
        raise Problem(
            410,
            "The youth's identifying details were destroyed (consent withdrawn or retention ended).",
            slug="pii-destroyed",
        )
    row = await conn.fetchrow(_SEALED_PII, rid)
    if row is None:
        raise Problem(404, "No such referral.")
    sealed = Sealed(row["key_id"], bytes(row["wrapped_key"]), bytes(row["nonce"]), bytes(row["ciphertext"]))
    plain = keys.open(sealed, str(rid).encode())
    consent = await conn.fetchrow(_CONSENT, rid)
    if reason:
        detail = {
            **detail,
            "reason_note_id": await notes.seal_note(
                conn, keys, caller, str(rid), sealed.key_id, sealed.wrapped_key, "break_glass_reason", reason
            ),
        }
    await audit.record(conn, caller.identity, action, "referral", str(rid), detail)
    data = msgspec.json.decode(plain)
    return PiiView(
        referral_id=str(rid),
        youth=data.get("youth") or {},
        location=data.get("location") or {},
        notes=data.get("notes"),
        consent=dict(consent) if consent else {},
        contact=data.get("contact"),
    )
