"""A person's live notifications as Server-Sent Events, for the API and the web app alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncGenerator

import asyncpg
import msgspec
from litestar.response import ServerSentEvent, ServerSentEventMessage

from services.intake.core.dependencies import CallerDb
from services.intake.core.problems import Problem
from services.intake.notifications import service
from services.intake.notifications.hub import NotificationHub

__all__ = ["event_stream", "parse_cursor"]


def parse_cursor(last_event_id: str | None) -> int | None:
    """The notification id a resuming client last saw (``Last-Event-ID``); None for a fresh stream."""
    if not last_event_id:
        return None
    try:
        cursor = int(last_event_id)
        if not 0 <= cursor <= service.MAX_ID:
            raise ValueError(last_event_id)
    except ValueError:
        raise Problem(
            422,
            "Last-Event-ID must be a notification id.",
            errors=[{"field": "Last-Event-ID", "message": "not a notification id"}],
        ) from None
    return cursor


def _message(row: asyncpg.Record) -> ServerSentEventMessage:
    return ServerSentEventMessage(
        data=msgspec.json.encode(service.view(row)).decode(), event=row["kind"], id=row["id"]
    )


def event_stream(
    db: CallerDb, hub: NotificationHub, staff_id: str, cursor: int | None, heartbeat: float
) -> ServerSentEvent:
    """The stream for one person: the unread backlog (fresh) or what came after ``cursor`` (resumed),
    then each notification as it is committed; a comment every ``heartbeat`` seconds keeps it open.

    Each read is a short transaction of its own under the person's identity: a stream lives for hours
    and must not hold a connection.
    """
    recipient = str(uuid.UUID(staff_id))

    async def events() -> AsyncGenerator[ServerSentEventMessage, None]:
        nonlocal cursor
        wake = hub.subscribe(recipient)
        sent: dict[int, None] = {}
        try:
            if cursor is None:
                # A fresh connection gets the unread backlog first, then live events.
                async with db.transaction() as conn:
                    rows = await service.backlog(conn, recipient)
                    cursor = await service.latest_id(conn, recipient)
                for row in rows:
                    sent[row["id"]] = None
                    yield _message(row)
            # Ids at or below the starting cursor were delivered before (resume) or sent above;
            # the look-back in the query must not repeat them.
            floor = cursor
            yield ServerSentEventMessage(data=None, comment="connected", retry=2000)
            while not hub.stopping:
                wake.clear()
                async with db.transaction() as conn:
                    rows = await service.after(conn, recipient, cursor)
                for row in rows:
                    if row["id"] in sent or row["id"] <= floor:
                        continue
                    sent[row["id"]] = None
                    cursor = max(cursor or 0, row["id"])
                    yield _message(row)
                while len(sent) > 1000:
                    sent.pop(next(iter(sent)))
                try:
                    await asyncio.wait_for(wake.wait(), timeout=heartbeat)
                except TimeoutError:
                    yield ServerSentEventMessage(data=None, comment="keep-alive")
        finally:
            hub.unsubscribe(recipient, wake)

    return ServerSentEvent(events(), headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
