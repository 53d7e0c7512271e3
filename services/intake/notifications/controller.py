"""Notification endpoints for staff: the list, read marks, and the live stream."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from litestar import Controller, Request, get, post
from litestar.params import Parameter
from litestar.response import ServerSentEvent

from services.intake.core.auth import Caller, require_staff
from services.intake.core.dependencies import CallerDb
from services.intake.notifications import service
from services.intake.notifications.schemas import NotificationPage
from services.intake.notifications.stream import event_stream, parse_cursor

__all__ = ["NotificationController"]


class NotificationController(Controller):
    path = "/v1/notifications"
    tags = ["notifications"]
    guards = [require_staff()]

    @get("/", summary="My notifications, newest first")
    async def list_(
        self,
        caller: Caller,
        conn: asyncpg.Connection,
        unread: bool = False,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
    ) -> NotificationPage:
        return await service.list_mine(conn, caller, unread, limit)

    @post("/{notification_id:int}/read", status_code=204, summary="Mark a notification read")
    async def mark_read(self, caller: Caller, conn: asyncpg.Connection, notification_id: int) -> None:
        await service.mark_read(conn, caller, notification_id)

    @get("/stream", summary="Live notifications (Server-Sent Events); Last-Event-ID resumes")
    async def stream(
        self,
        request: Request[Any, Any, Any],
        caller: Caller,
        db: CallerDb,
        last_event_id: Annotated[str | None, Parameter(header="Last-Event-ID", required=False)] = None,
    ) -> ServerSentEvent:
        state = request.app.state
        return event_stream(
            db, state.hub, caller.id, parse_cursor(last_event_id), state.settings.sse_heartbeat_seconds
        )
