"""Admin reads of outbound deliveries, bus dead letters and the audit log; a dead delivery's replay.

Deliveries are notify's: a replay is asked of notify by a NATS command (notify re-checks it, queues it
again and audits it); intake reads the delivery back to answer.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

import asyncpg

from services.intake.admin.dashboard import delivery_counts
from services.intake.admin.schemas import (
    AttemptView,
    AuditEntry,
    DeadLetterPage,
    DeadLetterView,
    DeliveryDetail,
    DeliveryPage,
    DeliveryView,
)
from services.intake.core.auth import Caller
from services.intake.core.dependencies import CallerDb
from services.intake.core.problems import Problem
from shared.commands import CommandUnavailable, ReplayCommand, request_replay
from shared.db import load_sql
from shared.webhook_signing import webhook_id

__all__ = [
    "audit_log",
    "dead_letter",
    "dead_letters",
    "deliveries",
    "delivery",
    "delivery_stats",
    "replay_delivery",
    "unavailable",
]

_PKG = "services.intake.admin"
_DELIVERIES = load_sql(_PKG, "deliveries")
_DELIVERY = load_sql(_PKG, "delivery")
_DELIVERY_ATTEMPTS = load_sql(_PKG, "delivery_attempts")
_DEAD_LETTERS = load_sql(_PKG, "dead_letters")
_DEAD_LETTER = load_sql(_PKG, "dead_letter")
_AUDIT_LOG = load_sql(_PKG, "audit_log")


def unavailable(service: str) -> Problem:
    """The answer when another service did not answer a command: nothing was done; retry."""
    return Problem(
        503,
        f"The {service} service is not answering; nothing was done. Retry shortly.",
        headers={"Retry-After": "5"},
    )


# --------------------------------------------------------------------------- deliveries


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _delivery_view(r: asyncpg.Record) -> DeliveryView:
    return DeliveryView(
        id=str(r["id"]),
        webhook_id=webhook_id(r["id"]) if r["channel"] == "webhook" else None,
        channel=r["channel"],
        kind=r["kind"],
        event_id=str(r["event_id"]),
        state=r["state"],
        attempts=r["attempts"],
        last_status=r["last_status"],
        last_error=r["last_error"],
        endpoint_id=_opt(r["endpoint_id"]),
        partner_id=_opt(r["partner_id"]),
        staff_id=_opt(r["staff_id"]),
        referral_id=_opt(r["referral_id"]),
        created_at=r["created_at"],
        updated_at=r["updated_at"],
        delivered_at=r["delivered_at"],
        next_attempt_at=r["next_attempt_at"],
    )


def _delivery_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, "No such delivery.") from None


def _encode_cursor(r: asyncpg.Record) -> str:
    raw = f"{r['created_at'].isoformat()}|{r['id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, rid = raw.partition("|")
        return datetime.fromisoformat(at), uuid.UUID(rid)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Problem(
            422, "The cursor is not valid.", errors=[{"field": "cursor", "message": "not a cursor"}]
        ) from None


async def deliveries(
    conn: asyncpg.Connection,
    *,
    state: str | None,
    channel: str | None,
    endpoint_id: uuid.UUID | None,
    limit: int,
    cursor: str | None,
) -> DeliveryPage:
    """Outbound deliveries, newest first (state=dead is the dead-letter list)."""
    after = _decode_cursor(cursor) if cursor else None
    rows = await conn.fetch(
        _DELIVERIES,
        state,
        channel,
        endpoint_id,
        after[0] if after else None,
        after[1] if after else None,
        limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(
        items=[_delivery_view(r) for r in rows],
        next_cursor=_encode_cursor(rows[-1]) if more and rows else None,
    )


async def delivery_stats(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    return await delivery_counts(conn)


async def delivery(conn: asyncpg.Connection, delivery_id: str) -> DeliveryDetail:
    """One delivery and every attempt made."""
    did = _delivery_id(delivery_id)
    row = await conn.fetchrow(_DELIVERY, did)
    if row is None:
        raise Problem(404, "No such delivery.")
    return DeliveryDetail(
        delivery=_delivery_view(row),
        attempts=[
            AttemptView(
                attempt=a["attempt"],
                started_at=a["started_at"],
                latency_ms=a["latency_ms"],
                status_code=a["status_code"],
                error=a["error"],
                outcome=a["outcome"],
                next_attempt_at=a["next_attempt_at"],
            )
            for a in await conn.fetch(_DELIVERY_ATTEMPTS, did)
        ],
    )


async def replay_delivery(
    db: CallerDb, caller: Caller, nc: Any, delivery_id: str, request_id: str = ""
) -> DeliveryView:
    """Ask notify to send a dead delivery again (same webhook-id); then show it as it is now."""
    did = _delivery_id(delivery_id)
    command = ReplayCommand(
        delivery_id=str(did), actor_id=caller.id, actor_role=caller.role, request_id=request_id
    )
    try:
        if nc is None:
            raise CommandUnavailable("not connected")
        reply = await request_replay(nc, command)
    except CommandUnavailable:
        raise unavailable("notify") from None
    if reply.status == 404:
        raise Problem(404, "No such delivery.")
    if reply.status == 409:
        raise Problem(409, reply.message, slug="replay-refused")
    if 400 <= reply.status < 500:  # 403 when notify finds the actor may not (any more)
        raise Problem(reply.status, reply.message)
    if reply.status != 202:
        raise unavailable("notify")
    async with db.transaction() as conn:
        row = await conn.fetchrow(_DELIVERY, did)
    if row is None:  # replayed a moment ago: only a purge could have removed it since
        raise Problem(404, "No such delivery.")
    return _delivery_view(row)


# --------------------------------------------------------------------------- bus dead letters


def _dead_letter_view(r: asyncpg.Record) -> DeadLetterView:
    payload = bytes(r["payload"])
    return DeadLetterView(
        id=r["id"],
        consumer=r["consumer"],
        subject=r["subject"],
        event_id=str(r["event_id"]) if r["event_id"] is not None else None,
        stream_seq=r["stream_seq"],
        delivery_count=r["delivery_count"],
        reason=r["reason"],
        error_class=r["error_class"],
        error_message=r["error_message"],
        payload_base64=base64.b64encode(payload).decode(),
        payload_size=len(payload),
        first_failed_at=r["first_failed_at"],
        last_failed_at=r["last_failed_at"],
    )


async def dead_letters(
    conn: asyncpg.Connection, consumer: str | None, limit: int, cursor: str | None
) -> DeadLetterPage:
    """Bus messages the consumers gave up on, newest first."""
    before: int | None = None
    if cursor is not None:
        if not cursor.isdigit() or len(cursor) > 18:
            raise Problem(
                422, "The cursor is not valid.", errors=[{"field": "cursor", "message": "invalid cursor"}]
            )
        before = int(cursor)
    rows = await conn.fetch(_DEAD_LETTERS, consumer, before, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return DeadLetterPage(
        items=[_dead_letter_view(r) for r in rows], next_cursor=str(rows[-1]["id"]) if more and rows else None
    )


async def dead_letter(conn: asyncpg.Connection, dead_letter_id: int) -> DeadLetterView:
    row = await conn.fetchrow(_DEAD_LETTER, dead_letter_id)
    if row is None:
        raise Problem(404, "No such dead letter.")
    return _dead_letter_view(row)


# --------------------------------------------------------------------------- audit


async def audit_log(conn: asyncpg.Connection, limit: int, action: str | None) -> list[AuditEntry]:
    """Audit log entries, newest first (ids and codes, no PII)."""
    return [
        AuditEntry(
            seq=r["seq"],
            id=r["id"],
            at=r["at"].isoformat(),
            actor_role=r["actor_role"],
            actor_id=r["actor_id"],
            action=r["action"],
            target_type=r["target_type"],
            target_id=r["target_id"],
            detail=r["detail"],
        )
        for r in await conn.fetch(_AUDIT_LOG, limit, action)
    ]
