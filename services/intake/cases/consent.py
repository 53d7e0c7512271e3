"""Consent withdrawal and expiry: the youth's PII is crypto-shredded and nothing more leaves about them."""

from __future__ import annotations

import uuid

import asyncpg
import structlog

from services.intake.core.auth import Caller
from services.intake.core.problems import Problem
from services.intake.referrals.schemas import ReferralView
from services.intake.referrals.service import read_referral, referral_view
from shared import audit
from shared.db import SYSTEM, Identity, load_sql, transaction
from shared.events import ReferralWithdrawn
from shared.outbox import enqueue

__all__ = ["expire_consents", "shred", "shred_expired_retention", "withdraw"]

log = structlog.get_logger("refnet.intake")

_PKG = "services.intake.cases"
_DELETE_REFERRAL_KEY = load_sql(_PKG, "delete_referral_key")
_SET_TRANSITION_REASON = load_sql(_PKG, "set_transition_reason")
_SHRED_REFERRAL = load_sql(_PKG, "shred_referral")
_LOCK_REFERRAL = load_sql(_PKG, "lock_referral")
_REFERRAL = load_sql(_PKG, "referral")
_WITHDRAW_CONSENT = load_sql(_PKG, "withdraw_consent")
_EXPIRED_CONSENTS = load_sql(_PKG, "expired_consents")
_MARK_CONSENT_EXPIRED = load_sql(_PKG, "mark_consent_expired")
_RETENTION_DUE = load_sql(_PKG, "retention_due")
_FORGET_YOUTH = load_sql(_PKG, "forget_youth")

# Past engagement the case continues without identifying data; before it, the referral stops.
_STOPPABLE = ("received", "assigned", "accepted", "unroutable")


async def shred(
    conn: asyncpg.Connection,
    referral: asyncpg.Record,
    identity: Identity,
    reason: str,
    *,
    withdraw_status: bool,
) -> str:
    """Destroy the referral's data key (the ciphertext stays, unreadable) and its youth key, and stop it
    if not engaged.

    Returns the referral's status afterwards. The caller's transaction holds the referral row lock.
    """
    rid = referral["id"]
    status = "withdrawn" if withdraw_status and referral["status"] in _STOPPABLE else referral["status"]
    await conn.execute(_DELETE_REFERRAL_KEY, rid)
    # The status-change trigger records this as the reason for `withdrawn` (migration 0005).
    await conn.execute(_SET_TRANSITION_REASON, reason)
    await conn.execute(_SHRED_REFERRAL, rid, status)
    # The blind indexes and "same youth" matches would still link this youth to later referrals.
    await conn.execute(_FORGET_YOUTH, rid)
    # An internal event (ids only): routing cancels a live offer and frees the capacity (it owns
    # assignments); notify tells the case manager in-app and sends nothing outward about the youth.
    await enqueue(conn, ReferralWithdrawn(referral_id=str(rid), reason=reason, status=status))
    await audit.record(
        conn, identity, "pii.shred", "referral", str(rid), {"reason": reason, "status": status}
    )
    return status


async def withdraw(conn: asyncpg.Connection, caller: Caller, referral_id: str) -> ReferralView:
    """The youth withdrew consent, as recorded by the referring partner or the case manager."""
    if caller.role not in ("partner", "case_manager"):
        raise Problem(403, "Only the referring partner or the case manager can record a withdrawal.")
    try:
        rid = uuid.UUID(referral_id)
    except ValueError:
        raise Problem(404, "No such referral.") from None
    # Row-level security limits this to the caller's own (partner) or assigned (case manager) referral.
    ref = await conn.fetchrow(_LOCK_REFERRAL, rid)
    if ref is None:
        raise Problem(404, "No such referral.")
    if await conn.fetchrow(_WITHDRAW_CONSENT, rid, caller.role) is None:
        raise Problem(409, "Consent for this referral was already withdrawn.", slug="already-withdrawn")
    await shred(conn, ref, caller.identity, "consent_withdrawn", withdraw_status=True)
    log.info("consent.withdrawn", referral_id=str(rid), by=caller.role)
    if caller.role == "partner":
        # The partner's own status view: after a withdrawal it tells the partner nothing more.
        return await read_referral(conn, caller, str(rid))
    row = await conn.fetchrow(_REFERRAL, rid)
    assert row is not None
    return referral_view(row)


async def expire_consents(pool: asyncpg.Pool, batch: int = 200) -> int:
    """Treat expired consent like a withdrawal. Runs periodically; SKIP LOCKED keeps intakes apart."""
    async with transaction(pool, SYSTEM) as conn:
        rows = await conn.fetch(_EXPIRED_CONSENTS, batch)
        for ref in rows:
            await conn.execute(_MARK_CONSENT_EXPIRED, ref["id"])
            await shred(conn, ref, SYSTEM, "consent_expired", withdraw_status=True)
    return len(rows)


async def shred_expired_retention(pool: asyncpg.Pool, retention_days: int, batch: int = 200) -> int:
    """Retention: PII of referrals closed longer ago than the retention period is destroyed."""
    async with transaction(pool, SYSTEM) as conn:
        rows = await conn.fetch(_RETENTION_DUE, retention_days, batch)
        for ref in rows:
            await shred(conn, ref, SYSTEM, "retention", withdraw_status=False)
    return len(rows)
