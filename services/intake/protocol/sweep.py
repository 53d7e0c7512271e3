"""The overdue sweep: each protocol step past its due time raises `refnet.protocol.overdue` once."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import structlog

from shared.db import SYSTEM, load_sql, transaction
from shared.events import ProtocolOverdue
from shared.outbox import enqueue

__all__ = ["escalate_overdue"]

log = structlog.get_logger("refnet.intake")
_PKG = "services.intake.protocol"
_OVERDUE = load_sql(_PKG, "overdue_steps")
_MARK = load_sql(_PKG, "mark_escalated")


async def escalate_overdue(pool: asyncpg.Pool, batch: int = 200) -> int:
    """Write one protocol.overdue event per overdue, unescalated step (through the outbox, marked in the
    same transaction): the database, not a timer, says what is overdue, so a restart or a missed run
    loses nothing and a later run repeats nothing."""
    now = datetime.now(UTC)
    async with transaction(pool, SYSTEM) as conn:
        rows = await conn.fetch(_OVERDUE, now, batch)
        events = []
        for row in rows:
            event = ProtocolOverdue(
                referral_id=str(row["referral_id"]), step=row["code"], due_at=row["due_at"]
            )
            await conn.execute(_MARK, row["referral_id"], row["code"], now, event.event_id)
            events.append(event)
        await enqueue(conn, *events)
    if rows:
        log.info("protocol.overdue", count=len(rows), steps=sorted({r["code"] for r in rows}))
    return len(rows)
