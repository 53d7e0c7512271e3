"""In-app notifications: the list, read marks, and the live SSE stream woken by PostgreSQL NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncGenerator
from typing import Annotated, Any

import asyncpg
import msgspec
import structlog
from litestar import Controller, Request, get, post
from litestar.params import Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from services.intake.auth import require_staff, resolve_caller
from services.intake.problems import Problem
from services.intake.schemas import NotificationPage, NotificationView
from shared.db import load_sql, transaction

__all__ = ["NotificationController", "NotificationHub"]

log = structlog.get_logger("refnet.intake")
_SQL = "services.intake"
# Notification ids are bigint; a larger number names nothing (and must not reach the database).
_MAX_ID = 2**63 - 1


class NotificationHub:
    """One LISTEN connection per intake process fans wake-ups out to that process's SSE streams."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def subscribe(self, recipient_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._waiters[recipient_id].add(ev)
        return ev

    def unsubscribe(self, recipient_id: str, ev: asyncio.Event) -> None:
        waiters = self._waiters.get(recipient_id)
        if waiters is not None:
            waiters.discard(ev)
            if not waiters:
                del self._waiters[recipient_id]

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        for ev in self._waiters.get(str(payload), ()):
            ev.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for ev in waiters:
                ev.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notification-hub")

    async def stop(self) -> None:
        self._stop.set()
        self._wake_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def _run(self) -> None:
        while not self._stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                await conn.add_listener("refnet_notifications", self._on_notify)
                # Anything committed while we were not listening: let every stream re-query.
                self._wake_all()
                while not self._stop.is_set() and not conn.is_closed():
                    await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("hub.listen_failed", error=type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)


def _item(row: asyncpg.Record) -> NotificationView:
    return NotificationView(
        id=row["id"],
        kind=row["kind"],
        referral_id=str(row["referral_id"]) if row["referral_id"] else None,
        assignment_id=str(row["assignment_id"]) if row["assignment_id"] else None,
        created_at=row["created_at"],
        read_at=row["read_at"],
        data=row["data"],
    )


class NotificationController(Controller):
    path = "/v1/notifications"
    tags = ["notifications"]
    guards = [require_staff()]

    @get("/", summary="My notifications, newest first")
    async def list_(
        self,
        request: Request[Any, Any, Any],
        unread: bool = False,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> NotificationPage:
        caller = await resolve_caller(request)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            rows = await conn.fetch(
                "SELECT id, kind, referral_id, assignment_id, created_at, read_at, data FROM notifications"
                " WHERE recipient_id = $1 AND channel = 'inapp' AND (NOT $2 OR read_at IS NULL)"
                " ORDER BY id DESC LIMIT $3",
                caller.id,
                unread,
                limit,
            )
        return NotificationPage(items=[_item(r) for r in rows])

    @post("/{notification_id:int}/read", status_code=204, summary="Mark a notification read")
    async def mark_read(self, request: Request[Any, Any, Any], notification_id: int) -> None:
        caller = await resolve_caller(request)
        if not 0 < notification_id <= _MAX_ID:
            raise Problem(404, "No such notification.")
        async with transaction(request.app.state.pool, caller.identity) as conn:
            done = await conn.fetchval(
                "UPDATE notifications SET read_at = coalesce(read_at, now())"
                " WHERE id = $1 AND recipient_id = $2 RETURNING 1",
                notification_id,
                caller.id,
            )
        if done is None:
            raise Problem(404, "No such notification.")

    @get("/stream", summary="Live notifications (Server-Sent Events); Last-Event-ID resumes")
    async def stream(
        self,
        request: Request[Any, Any, Any],
        last_event_id: Annotated[str | None, Parameter(header="Last-Event-ID", required=False)] = None,
    ) -> ServerSentEvent:
        caller = await resolve_caller(request)
        state = request.app.state
        cursor: int | None = None
        if last_event_id:
            try:
                cursor = int(last_event_id)
                if not 0 <= cursor <= _MAX_ID:
                    raise ValueError(last_event_id)
            except ValueError:
                raise Problem(
                    422,
                    "Last-Event-ID must be a notification id.",
                    errors=[{"field": "Last-Event-ID", "message": "not a notification id"}],
                ) from None
        pool: asyncpg.Pool = state.pool
        hub: NotificationHub = state.hub
        heartbeat: float = state.settings.sse_heartbeat_seconds
        recipient = str(uuid.UUID(caller.id))
        identity = caller.identity

        async def events() -> AsyncGenerator[ServerSentEventMessage, None]:
            nonlocal cursor
            wake = hub.subscribe(recipient)
            sent: dict[int, None] = {}
            try:
                if cursor is None:
                    # A fresh connection gets the unread backlog first, then live events.
                    async with transaction(pool, identity) as conn:
                        rows = await conn.fetch(
                            "SELECT id, kind, referral_id, assignment_id, created_at, read_at, data"
                            " FROM notifications WHERE recipient_id = $1 AND channel = 'inapp' AND read_at IS NULL"
                            " ORDER BY id DESC LIMIT 100",
                            recipient,
                        )
                        cursor = await conn.fetchval(
                            "SELECT coalesce(max(id), 0) FROM notifications WHERE recipient_id = $1",
                            recipient,
                        )
                    rows = list(reversed(rows))
                    for row in rows:
                        sent[row["id"]] = None
                        yield _message(row)
                # Ids at or below the starting cursor were delivered before (resume) or sent above;
                # the look-back in the query must not repeat them.
                floor = cursor
                yield ServerSentEventMessage(data=None, comment="connected", retry=2000)
                while not hub.stopping:
                    wake.clear()
                    async with transaction(pool, identity) as conn:
                        rows = await conn.fetch(load_sql(_SQL, "notifications_after"), recipient, cursor)
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


def _message(row: asyncpg.Record) -> ServerSentEventMessage:
    return ServerSentEventMessage(
        data=msgspec.json.encode(_item(row)).decode(), event=row["kind"], id=row["id"]
    )
