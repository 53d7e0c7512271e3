"""Admin view of bus dead letters: messages a consumer gave up on (poison, undecodable, or out of deliveries)."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import Controller, Request, get
from litestar.params import Parameter

from services.intake.auth import require_staff, resolve_caller
from services.intake.problems import Problem
from shared.db import transaction

__all__ = ["AdminDeadLettersController"]


class DeadLetterView(msgspec.Struct, kw_only=True):
    id: int
    consumer: str
    subject: str
    event_id: str | None
    stream_seq: int
    delivery_count: int
    reason: str
    error_class: str
    error_message: str
    # Events carry ids, codes and timestamps only (no PII), so the original bytes are shown as sent.
    payload_base64: str
    payload_size: int
    first_failed_at: datetime
    last_failed_at: datetime


class DeadLetterPage(msgspec.Struct):
    items: list[DeadLetterView]
    next_cursor: str | None


_COLUMNS = (
    "id, consumer, subject, event_id, stream_seq, delivery_count, reason, error_class, error_message,"
    " payload, first_failed_at, last_failed_at"
)


def _view(r: asyncpg.Record) -> DeadLetterView:
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


class AdminDeadLettersController(Controller):
    path = "/v1/admin/dead-letters"
    tags = ["admin"]
    guards = [require_staff("admin")]

    @get("/", summary="Bus messages the consumers gave up on, newest first")
    async def list_(
        self,
        request: Request[Any, Any, Any],
        consumer: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: str | None = None,
    ) -> DeadLetterPage:
        caller = await resolve_caller(request)
        before: int | None = None
        if cursor is not None:
            if not cursor.isdigit() or len(cursor) > 18:
                raise Problem(
                    422, "The cursor is not valid.", errors=[{"field": "cursor", "message": "invalid cursor"}]
                )
            before = int(cursor)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM dead_letters"
                " WHERE ($1::text IS NULL OR consumer = $1) AND ($2::bigint IS NULL OR id < $2)"
                " ORDER BY id DESC LIMIT $3",
                consumer,
                before,
                limit + 1,
            )
        more = len(rows) > limit
        rows = rows[:limit]
        return DeadLetterPage(
            items=[_view(r) for r in rows], next_cursor=str(rows[-1]["id"]) if more and rows else None
        )

    @get("/{dead_letter_id:int}", summary="One dead letter")
    async def read(self, request: Request[Any, Any, Any], dead_letter_id: int) -> DeadLetterView:
        caller = await resolve_caller(request)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            row = await conn.fetchrow(f"SELECT {_COLUMNS} FROM dead_letters WHERE id = $1", dead_letter_id)
        if row is None:
            raise Problem(404, "No such dead letter.")
        return _view(row)
