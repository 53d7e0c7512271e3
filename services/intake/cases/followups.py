"""Outcome follow-up reminders: a periodic sweep emits `case.followup_due` once per due follow-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from shared.casework import local_date
from shared.db import SYSTEM, load_sql, transaction
from shared.events import FollowupDue
from shared.outbox import enqueue

__all__ = ["remind_followups"]

log = structlog.get_logger("refnet.intake")
_PKG = "services.intake.cases"
_DUE_FOLLOWUPS = load_sql(_PKG, "due_followups")
_REGION_SUPERVISORS = load_sql(_PKG, "region_supervisors")
_INSERT_FOLLOWUP_NOTIFICATION = load_sql(_PKG, "insert_followup_notification")
_MARK_REMINDED = load_sql(_PKG, "mark_reminded")


async def remind_followups(pool: asyncpg.Pool, lead_days: int = 7, batch: int = 200) -> int:
    """Remind the case manager of each follow-up due within ``lead_days`` (or overdue), exactly once.

    The event goes through the outbox for notify (email, and whatever channels it adds); the in-app
    notification is written here too, keyed by the event id, so notify writing it again is a no-op.
    """
    today = local_date(datetime.now(UTC))
    async with transaction(pool, SYSTEM) as conn:
        rows = await conn.fetch(_DUE_FOLLOWUPS, today + timedelta(days=lead_days), batch)
        for row in rows:
            cm = row["case_manager_id"]
            event = FollowupDue(
                referral_id=str(row["referral_id"]),
                followup=row["point"],
                due_on=row["due_on"],
                case_manager_id=str(cm) if cm else None,
                do_not_contact=row["do_not_contact"],
            )
            if cm is not None:
                recipients = [cm]
            else:
                # Nobody holds the case (should not happen): the region's supervisors must know.
                recipients = [r["id"] for r in await conn.fetch(_REGION_SUPERVISORS, row["region"])]
                log.warning(
                    "followup.no_case_manager", referral_id=str(row["referral_id"]), point=row["point"]
                )
            data = {
                "followup": row["point"],
                "due_on": row["due_on"].isoformat(),
                "overdue": row["due_on"] < today,
                "do_not_contact": row["do_not_contact"],
            }
            await conn.executemany(
                _INSERT_FOLLOWUP_NOTIFICATION,
                [(r, event.event_id, row["referral_id"], data) for r in recipients],
            )
            await conn.execute(_MARK_REMINDED, row["referral_id"], row["point"], event.event_id)
            await enqueue(conn, event)
        if rows:
            log.info("followup.reminders", count=len(rows))
        return len(rows)
