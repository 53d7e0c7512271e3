"""A person's in-app notifications: listing, read marks, and the reads a live stream makes."""

from __future__ import annotations

import asyncpg

from services.intake.core.auth import Caller
from services.intake.core.problems import Problem
from services.intake.notifications.schemas import NotificationPage, NotificationView
from shared.db import load_sql

__all__ = ["MAX_ID", "after", "backlog", "latest_id", "list_mine", "mark_read", "view"]

_PKG = "services.intake.notifications"
_MINE = load_sql(_PKG, "my_notifications")
_MARK_READ = load_sql(_PKG, "mark_read")
_BACKLOG = load_sql(_PKG, "unread_backlog")
_LATEST_ID = load_sql(_PKG, "latest_notification_id")
_AFTER = load_sql(_PKG, "notifications_after")

# Notification ids are bigint; a larger number names nothing (and must not reach the database).
MAX_ID = 2**63 - 1


def view(row: asyncpg.Record) -> NotificationView:
    return NotificationView(
        id=row["id"],
        kind=row["kind"],
        referral_id=str(row["referral_id"]) if row["referral_id"] else None,
        assignment_id=str(row["assignment_id"]) if row["assignment_id"] else None,
        created_at=row["created_at"],
        read_at=row["read_at"],
        data=row["data"],
    )


async def list_mine(conn: asyncpg.Connection, caller: Caller, unread: bool, limit: int) -> NotificationPage:
    return NotificationPage(items=[view(r) for r in await conn.fetch(_MINE, caller.id, unread, limit)])


async def mark_read(conn: asyncpg.Connection, caller: Caller, notification_id: int) -> None:
    if not 0 < notification_id <= MAX_ID:
        raise Problem(404, "No such notification.")
    if await conn.fetchval(_MARK_READ, notification_id, caller.id) is None:
        raise Problem(404, "No such notification.")


async def backlog(conn: asyncpg.Connection, recipient: str) -> list[asyncpg.Record]:
    """The unread backlog, oldest first."""
    return list(reversed(await conn.fetch(_BACKLOG, recipient)))


async def latest_id(conn: asyncpg.Connection, recipient: str) -> int:
    return int(await conn.fetchval(_LATEST_ID, recipient))


async def after(conn: asyncpg.Connection, recipient: str, cursor: int | None) -> list[asyncpg.Record]:
    """Notifications after ``cursor``, with a look-back for ids committed late (see the SQL)."""
    return await conn.fetch(_AFTER, recipient, cursor)
