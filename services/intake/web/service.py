"""What only the web pages read (the header's name, the inbox, the roster, the map) and how a page runs a change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import asyncpg

from services.intake.core.dependencies import CallerDb
from services.intake.core.problems import Problem
from shared.db import load_sql

__all__ = [
    "REFUSED",
    "attempt",
    "display_name",
    "display_name_alone",
    "inbox",
    "referral_language",
    "referrals_by_region",
    "split_cases",
    "staff_roster",
]

# The refusals a page answers with a message (the rest are error pages).
REFUSED = (409, 422)

_PKG = "services.intake.web"
_DISPLAY_NAME = load_sql(_PKG, "display_name")
_INBOX_OFFERS = load_sql(_PKG, "inbox_offers")
_INBOX_CASES = load_sql(_PKG, "inbox_cases")
_STAFF_ROSTER = load_sql(_PKG, "staff_roster")
_REFERRALS_BY_REGION = load_sql(_PKG, "referrals_by_region")
_REFERRAL_LANGUAGE = load_sql(_PKG, "referral_language")


async def display_name(conn: asyncpg.Connection, staff_id: str) -> str:
    return str(await conn.fetchval(_DISPLAY_NAME, staff_id) or "")


async def display_name_alone(db: CallerDb, staff_id: str) -> str:
    """``display_name`` in a short transaction of its own (for a page whose change ran in another)."""
    async with db.transaction() as conn:
        return await display_name(conn, staff_id)


async def inbox(conn: asyncpg.Connection, staff_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A case manager's open offers and accepted cases."""
    offers = await conn.fetch(_INBOX_OFFERS, staff_id)
    cases = await conn.fetch(_INBOX_CASES, staff_id)
    return [dict(r) for r in offers], [dict(r) for r in cases]


# Statuses of a case still in the case manager's hands (the rest are closed or withdrawn).
OPEN_CASE = ("accepted", "engaged")


def split_cases(
    cases: list[dict[str, Any]], today: date
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Open cases by what needs attention first, then closed ones, the most recently closed first.

    Attention: an overdue follow-up (the longest overdue first), then a case waiting for its first
    contact (the oldest acceptance first), then the next follow-up due (the soonest first). Each case
    gets ``attention``: "overdue", "first_contact", "followup" or "" (nothing due), and closed cases lose
    their future follow-ups (nothing more is asked of them)."""
    open_: list[dict[str, Any]] = []
    closed: list[dict[str, Any]] = []
    for c in cases:
        c = dict(c)
        due: date | None = c.get("next_due")
        if c["status"] not in OPEN_CASE:
            c.update(attention="", next_followup=None, next_due=None)
            closed.append(c)
            continue
        if due is not None and due < today:
            c["attention"] = "overdue"
        elif c["status"] == "accepted":
            c["attention"] = "first_contact"
        else:
            c["attention"] = "followup" if due is not None else ""
        open_.append(c)
    rank = {"overdue": 0, "first_contact": 1, "followup": 2, "": 3}
    far = date.max
    open_.sort(
        key=lambda c: (
            rank[c["attention"]],
            c["responded_at"].date() if c["attention"] == "first_contact" and c["responded_at"] else far,
            c["next_due"] or far,
            c["received_at"],
        )
    )
    closed.sort(key=lambda c: c.get("closed_at") or c["updated_at"], reverse=True)
    return open_, closed


async def referral_language(conn: asyncpg.Connection, referral_id: str) -> str | None:
    """The youth's language code, read as the caller (row-level security applies)."""
    value = await conn.fetchval(_REFERRAL_LANGUAGE, referral_id)
    return None if value is None else str(value)


async def staff_roster(conn: asyncpg.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(_STAFF_ROSTER)]


async def referrals_by_region(conn: asyncpg.Connection) -> dict[str, int]:
    """Counts per region code ("out_of_area" for referrals outside every region)."""
    return {(r["region"] or "out_of_area"): r["n"] for r in await conn.fetch(_REFERRALS_BY_REGION)}


async def attempt(
    db: CallerDb,
    change: Callable[[asyncpg.Connection], Awaitable[object]],
    refused: tuple[int, ...] = REFUSED,
) -> Problem | None:
    """Run one change in a transaction of its own: None when done, or the service's refusal (409/422),
    rolled back so a refused change leaves nothing behind; any other failure raises."""
    try:
        async with db.transaction() as conn:
            await change(conn)
    except Problem as exc:
        if exc.status_code in refused:
            return exc
        raise
    return None
