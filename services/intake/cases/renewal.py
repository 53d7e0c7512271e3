"""Consent over two years: the case manager renews a youth's consent, and is warned before it expires.

A renewal replaces the referral's current consent (the one the expiry sweep reads) and is kept as a
record of its own; nothing else about the case changes. Only an expiry that nobody renewed shreds. A
periodic sweep warns the case manager in-app (and, through notify, by email where enabled) 30 and 7
days before an expiry, once per lead and expiry date: a renewal moves the date, so its reminders come
again before the new one.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import structlog

from services.intake.core.auth import Caller
from services.intake.core.problems import Problem
from services.intake.referrals.schemas import Consent
from services.intake.referrals.validation import check_consent
from shared import audit
from shared.codes import CONSENT_REMINDER_DAYS
from shared.db import SYSTEM, load_sql, transaction
from shared.events import ConsentExpiring
from shared.outbox import enqueue

__all__ = ["ConsentView", "consent_view", "days_left", "read_consent", "remind_consents", "renew"]

log = structlog.get_logger("refnet.intake")

_PKG = "services.intake.cases"
_CM_OWNS_CASE = load_sql(_PKG, "cm_owns_case")
_LOCK_CONSENT = load_sql(_PKG, "lock_consent")
_RENEW_CONSENT = load_sql(_PKG, "renew_consent")
_INSERT_CONSENT_RENEWAL = load_sql(_PKG, "insert_consent_renewal")
_CONSENT_STATE = load_sql(_PKG, "consent_state")
_DUE_CONSENT_REMINDERS = load_sql(_PKG, "due_consent_reminders")
_INSERT_CONSENT_REMINDER = load_sql(_PKG, "insert_consent_reminder")
_INSERT_CONSENT_NOTIFICATION = load_sql(_PKG, "insert_consent_notification")
_REGION_SUPERVISORS = load_sql(_PKG, "region_supervisors")

# Where a renewal does not interrupt anything: the case is accepted, engaged or (follow-ups) closed.
_RENEWABLE = ("accepted", "engaged", "closed")


class ConsentView(msgspec.Struct, kw_only=True):
    """The consent in force for a referral and how long it has left (no PII)."""

    referral_id: str
    method: str
    scope: list[str]
    obtained_at: datetime
    expires_at: datetime
    status: str  # active | expiring (within 30 days) | expired | withdrawn
    days_left: int
    renewed_at: datetime | None = None
    renewals: int = 0


def days_left(expires_at: datetime, now: datetime) -> int:
    """Whole days until the expiry, rounded up (an expiry later today is 1 day left); 0 once past."""
    seconds = (expires_at - now).total_seconds()
    return max(0, math.ceil(seconds / 86400))


def consent_view(referral_id: str, row: Any, now: datetime) -> ConsentView:
    """``row``: the consent's columns (a record of consent_state.sql or lock_consent.sql)."""
    expires_at: datetime = row["expires_at"]
    left = days_left(expires_at, now)
    if row["withdrawn_at"] is not None:
        status = "withdrawn"
    elif expires_at <= now:
        status = "expired"
    elif left <= max(CONSENT_REMINDER_DAYS):
        status = "expiring"
    else:
        status = "active"
    return ConsentView(
        referral_id=referral_id,
        method=row["method"],
        scope=list(row["scope"]),
        obtained_at=row["obtained_at"],
        expires_at=expires_at,
        status=status,
        days_left=0 if status == "withdrawn" else left,
        renewed_at=row["renewed_at"],
        renewals=row.get("renewals", 0),
    )


def _rid(referral_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(referral_id)
    except ValueError:
        raise Problem(404, "No such referral.") from None


async def read_consent(conn: asyncpg.Connection, caller: Caller, referral_id: str) -> ConsentView:
    """The referral's consent as its case manager (or an admin) sees it; anyone else: 404."""
    row = await conn.fetchrow(_CONSENT_STATE, _rid(referral_id))
    if row is None:
        raise Problem(404, "No such referral.")
    return consent_view(referral_id, row, datetime.now(UTC))


async def renew(conn: asyncpg.Connection, caller: Caller, referral_id: str, data: Consent) -> ConsentView:
    """Record a renewed consent for the case manager's own case; the case goes on untouched."""
    rid = _rid(referral_id)
    if caller.role != "case_manager":
        raise Problem(403, "Only the case manager who holds the case renews consent.")
    now = datetime.now(UTC)
    errors = check_consent(data, now)
    if errors:
        raise Problem(
            422,
            "; ".join(e.message for e in errors),
            errors=[{"field": e.field, "message": e.message} for e in errors],
        )
    current = await conn.fetchrow(_LOCK_CONSENT, rid)
    if current is None or not await conn.fetchval(_CM_OWNS_CASE, rid):
        # Row-level security hides others' referrals; an offer not yet accepted is not a case to renew.
        raise Problem(404, "No such referral.")
    if current["withdrawn_at"] is not None or current["pii_shredded_at"] is not None:
        raise Problem(
            409,
            "Consent for this referral ended and the youth's details were destroyed; it cannot be renewed.",
            slug="consent-ended",
        )
    if current["status"] not in _RENEWABLE:
        raise Problem(409, f"A {current['status']} referral's consent is not renewed.", slug="not-renewable")
    row = await conn.fetchrow(
        _RENEW_CONSENT, rid, data.method, list(data.scope), data.obtained_at, data.expires_at
    )
    assert row is not None  # locked above, still in force
    await conn.execute(
        _INSERT_CONSENT_RENEWAL,
        uuid.uuid4(),
        rid,
        data.method,
        list(data.scope),
        data.obtained_at,
        data.expires_at,
        current["expires_at"],
        caller.id,
    )
    await audit.record(
        conn,
        caller.identity,
        "consent.renew",
        "referral",
        str(rid),
        {"method": data.method, "expires_at": data.expires_at.isoformat()},
    )
    log.info("consent.renewed", referral_id=str(rid))
    state = await conn.fetchrow(_CONSENT_STATE, rid)
    assert state is not None
    return consent_view(str(rid), state, now)


async def remind_consents(pool: asyncpg.Pool, batch: int = 200) -> int:
    """Warn case managers of consents expiring within 30 and 7 days, once per lead and expiry date.

    When several leads are due at once (a consent found already inside 7 days), one warning goes out, at
    the shortest lead, and the longer leads are marked done with it. The in-app notification is written
    here, keyed by the event id; the event tells notify (email where enabled), which writing the in-app
    row again leaves alone.
    """
    leads = sorted(CONSENT_REMINDER_DAYS)
    now = datetime.now(UTC)
    sent = 0
    async with transaction(pool, SYSTEM) as conn:
        rows = await conn.fetch(_DUE_CONSENT_REMINDERS, max(leads), leads, batch)
        for row in rows:
            due = sorted(row["due"])
            cm = row["case_manager_id"]
            if not due:
                continue
            lead = due[0]
            left = days_left(row["expires_at"], now)
            if cm is None:
                # Nobody holds the case (should not happen for accepted cases): supervisors must know.
                recipients = [r["id"] for r in await conn.fetch(_REGION_SUPERVISORS, row["region"])]
                log.warning("consent.no_case_manager", referral_id=str(row["referral_id"]))
                event_id = str(uuid.uuid4())
            else:
                recipients = [cm]
                event = ConsentExpiring(
                    referral_id=str(row["referral_id"]),
                    case_manager_id=str(cm),
                    expires_at=row["expires_at"],
                    lead_days=lead,
                    days_left=left,
                )
                event_id = event.event_id
                await enqueue(conn, event)
            data = {"expires_at": row["expires_at"].isoformat(), "days_left": left, "lead_days": lead}
            await conn.executemany(
                _INSERT_CONSENT_NOTIFICATION, [(r, event_id, row["referral_id"], data) for r in recipients]
            )
            await conn.executemany(
                _INSERT_CONSENT_REMINDER,
                [
                    (row["referral_id"], d, row["expires_at"], event_id if d == lead else None, cm)
                    for d in due
                ],
            )
            sent += 1
    if sent:
        log.info("consent.reminders", count=sent)
    return sent
