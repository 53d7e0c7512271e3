"""A referral's protocol steps: created with it, read and completed under the caller's authorisation."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.intake.core.auth import Caller
from services.intake.core.keys import Keys
from services.intake.core.problems import Problem
from services.intake.protocol.clock import completion_errors, new_steps, started_by, status_of
from services.intake.protocol.definition import ProtocolFile, load_protocol
from services.intake.protocol.schemas import CompleteIn, ProtocolView, StepView
from shared import audit
from shared.db import load_sql

__all__ = [
    "STAFF_ROLES",
    "active_protocol",
    "complete",
    "new_step_columns",
    "next_due",
    "read",
    "use_protocol",
]

_PKG = "services.intake.protocol"
_STEPS = load_sql(_PKG, "steps")
_LOCK = load_sql(_PKG, "lock_step")
_COMPLETE = load_sql(_PKG, "complete_step")
_START = load_sql(_PKG, "start_clocks")
_NOTE_KEY = load_sql(_PKG, "note_key")
_REFERRAL = load_sql(_PKG, "referral_visible")
_NEXT = load_sql(_PKG, "next_steps")

# Who may read a referral's steps; anyone else (partners included) is answered as if it did not exist.
STAFF_ROLES = ("case_manager", "supervisor", "admin")
_active: list[ProtocolFile] = []


def use_protocol(path: str) -> ProtocolFile:
    """Load the protocol file named by REFNET_PROTOCOL_FILE (or the shipped one) for this process; an
    invalid file stops the service at start, not at the first referral of a child."""
    doc = load_protocol(path)
    _active[:] = [doc]
    return doc


def active_protocol() -> ProtocolFile:
    return _active[0] if _active else load_protocol()


def new_step_columns(age_years: int | None, received_at: datetime) -> tuple[Any, ...]:
    """The new referral's steps as the referral statement takes them (create_referrals.sql flattens a
    batch's): the protocol version, then one array per column, in step order; empty arrays unless a
    protocol covers the youth's age. Written in the referral's own statement: no round trip per child."""
    doc = active_protocol()
    protocol = doc.for_age(age_years)
    steps = new_steps(protocol.steps, received_at) if protocol is not None else []
    return (
        doc.version,
        [s.code for s in steps],
        [s.position for s in steps],
        [",".join(s.roles) for s in steps],
        [s.clock_from for s in steps],
        [s.clock_minutes for s in steps],
        [s.reference_required for s in steps],
        [",".join(s.outcomes) for s in steps],
        [",".join(s.escalate_to) for s in steps],
        [s.due_at for s in steps],
    )


def _rid(referral_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(referral_id)
    except ValueError:
        raise Problem(404, "No such referral.") from None


def _aad(rid: uuid.UUID, code: str) -> bytes:
    # Binds the sealed text to its referral and step: it cannot be moved to another one undetected.
    return f"{rid}/protocol/{code}".encode()


async def _visible(conn: asyncpg.Connection, caller: Caller, rid: uuid.UUID) -> asyncpg.Record:
    if caller.role == "evaluator":
        raise Problem(403, "Evaluators read de-identified exports, not referral records.")
    # Partners (and the agency's intake staff, who act as one) are answered as if it did not exist.
    if caller.kind != "staff" or caller.role not in STAFF_ROLES:
        raise Problem(404, "No such referral.")
    ref = await conn.fetchrow(_REFERRAL, rid)
    if ref is None:
        raise Problem(404, "No such referral.")
    return ref


async def _data_key(conn: asyncpg.Connection, keys: Keys, rid: uuid.UUID) -> bytes | None:
    row = await conn.fetchrow(_NOTE_KEY, rid)
    if row is None:
        return None  # destroyed (consent withdrawn, retention) or not the caller's
    return keys.unwrap(row["key_id"], bytes(row["wrapped_key"]), str(rid).encode())


def _view(row: asyncpg.Record, now: datetime, opened: dict[str, Any] | None) -> StepView:
    view = StepView(
        code=row["code"],
        status=status_of(row["due_at"], row["completed_at"], now),
        due_at=row["due_at"],
        completed_at=row["completed_at"],
        completed_by=str(row["completed_by"]) if row["completed_by"] else None,
        outcome=row["outcome"],
        roles=list(row["roles"]),
        reference_required=row["reference_required"],
        outcomes=list(row["outcomes"] or []),
        has_reference=row["has_reference"],
        has_note=row["has_note"],
    )
    if opened is not None:
        view.reference = opened.get("reference")
        view.note = opened.get("note")
    return view


async def read(conn: asyncpg.Connection, caller: Caller, keys: Keys, referral_id: str) -> ProtocolView:
    """The referral's steps with their status now; the case manager who has it also reads the sealed
    references and notes (one audited PII read)."""
    rid = _rid(referral_id)
    await _visible(conn, caller, rid)
    rows = await conn.fetch(_STEPS, rid)
    now = datetime.now(UTC)
    opened: dict[str, dict[str, Any]] = {}
    sealed = [r for r in rows if r["sealed_text"] is not None]
    if caller.role == "case_manager" and sealed:
        data_key = await _data_key(conn, keys, rid)
        if data_key is not None:
            box = AESGCM(data_key)
            for r in sealed:
                plain = box.decrypt(bytes(r["sealed_nonce"]), bytes(r["sealed_text"]), _aad(rid, r["code"]))
                opened[r["code"]] = msgspec.json.decode(plain)
            await audit.record(
                conn, caller.identity, "pii.read", "referral", str(rid), {"what": "protocol_notes"}
            )
    steps = [
        _view(r, now, opened.get(r["code"], {}) if caller.role == "case_manager" else None) for r in rows
    ]
    version = rows[0]["protocol_version"] if rows else active_protocol().version
    return ProtocolView(referral_id=str(rid), protocol_version=version, steps=steps)


async def complete(
    conn: asyncpg.Connection, caller: Caller, keys: Keys, referral_id: str, code: str, data: CompleteIn
) -> StepView:
    """Complete one step as the protocol file allows; late when after its due time; audited."""
    rid = _rid(referral_id)
    await _visible(conn, caller, rid)
    step = await conn.fetchrow(_LOCK, rid, code)
    if step is None:
        raise Problem(404, "This referral has no such protocol step.")
    if caller.role not in step["roles"]:
        raise Problem(403, f"The protocol lets {', '.join(step['roles'])} complete this step.")
    if step["completed_at"] is not None:
        raise Problem(409, "This step is already completed.", slug="step-completed")
    now = datetime.now(UTC)
    completed_at = data.completed_at or now
    errors = completion_errors(
        reference_required=step["reference_required"],
        outcomes=list(step["outcomes"] or []),
        received_at=step["received_at"],
        now=now,
        completed_at=completed_at,
        reference=data.reference,
        outcome=data.outcome,
    )
    if errors:
        raise Problem(
            422,
            "; ".join(f"{f}: {m}" for f, m in errors),
            errors=[{"field": f, "message": m} for f, m in errors],
        )
    reference = (data.reference or "").strip() or None
    note = (data.note or "").strip() or None
    nonce: bytes | None = None
    sealed: bytes | None = None
    if reference is not None or note is not None:
        data_key = await _data_key(conn, keys, rid)
        if data_key is None:
            raise Problem(
                410,
                "The youth's identifying details were destroyed: no reference or note can be kept.",
                slug="pii-destroyed",
            )
        nonce = os.urandom(12)
        plain = msgspec.json.encode({"reference": reference, "note": note})
        sealed = AESGCM(data_key).encrypt(nonce, plain, _aad(rid, code))
    done = await conn.fetchval(
        _COMPLETE,
        rid,
        code,
        completed_at,
        uuid.UUID(caller.id),
        caller.role,
        data.outcome,
        reference is not None,
        nonce,
        sealed,
        note is not None,
    )
    if done is None:
        raise Problem(409, "This step is already completed.", slug="step-completed")
    clocks = await conn.fetch(_STEPS, rid)
    if started_by(code, completed_at, {r["code"]: (r["clock_from"], r["clock_minutes"]) for r in clocks}):
        await conn.execute(_START, rid, code, completed_at)
    status = status_of(step["due_at"], completed_at, now)
    await audit.record(
        conn,
        caller.identity,
        "protocol.complete",
        "referral",
        str(rid),
        {"step": code, "status": status, "outcome": data.outcome, "sealed": sealed is not None},
    )
    return StepView(
        code=code,
        status=status,
        due_at=step["due_at"],
        completed_at=completed_at,
        completed_by=caller.id,
        outcome=data.outcome,
        roles=list(step["roles"]),
        reference_required=step["reference_required"],
        outcomes=list(step["outcomes"] or []),
        has_reference=reference is not None,
        has_note=note is not None,
    )


async def next_due(conn: asyncpg.Connection, referral_ids: list[Any]) -> dict[str, dict[str, Any]]:
    """Each referral's next open step with a deadline ({referral id: {"code", "due_at", "status"}})."""
    if not referral_ids:
        return {}
    rows = await conn.fetch(_NEXT, [uuid.UUID(str(r)) for r in referral_ids])
    now = datetime.now(UTC)
    return {
        str(r["referral_id"]): {
            "code": r["code"],
            "due_at": r["due_at"],
            "status": status_of(r["due_at"], None, now),
        }
        for r in rows
    }
