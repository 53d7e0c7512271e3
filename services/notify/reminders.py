"""Offer reminders: a periodic sweep outboxes one reminder event per open offer close to its deadline."""

from __future__ import annotations

import uuid

import asyncpg
import structlog

from shared.config import Settings
from shared.db import load_sql, transaction
from shared.events import AssignmentReminder
from shared.outbox import enqueue

__all__ = ["remind_offers"]

log = structlog.get_logger("refnet.notify")
_SQL = __package__


async def remind_offers(pool: asyncpg.Pool, settings: Settings, batch: int = 200) -> int:
    """Outbox ``assignment.reminder`` for due offers; returns how many were written.

    The reminder row's primary key (the assignment) is the dedup: several notify workers sweeping at
    once, or a sweep repeated after a crash, still remind each offer once.
    """
    if settings.offer_reminder_lead_seconds <= 0:
        return 0
    async with transaction(pool) as conn:
        due = await conn.fetch(load_sql(_SQL, "due_reminders"), settings.offer_reminder_lead_seconds, batch)
        events = []
        for row in due:
            event = AssignmentReminder(
                referral_id=str(row["referral_id"]),
                assignment_id=str(row["id"]),
                case_manager_id=str(row["case_manager_id"]),
                respond_by=row["respond_by"],
            )
            claimed = await conn.fetchval(
                load_sql(_SQL, "insert_offer_reminder"),
                row["id"],
                uuid.UUID(event.event_id),
            )
            if claimed:
                events.append(event)
        await enqueue(conn, *events)
    if events:
        log.info("notify.reminders_due", count=len(events))
    return len(events)
