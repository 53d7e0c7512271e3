"""Consent withdrawal and expiry: the youth's PII is crypto-shredded and nothing more leaves about them."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import structlog
from litestar import Request, post

from services.intake.auth import any_caller, resolve_caller
from services.intake.problems import Problem
from services.intake.referrals import referral_view
from services.intake.schemas import ReferralView, WithdrawIn
from shared import audit
from shared.db import SYSTEM, Identity, transaction
from shared.events import ReferralWithdrawn
from shared.outbox import enqueue

__all__ = ["expire_consents", "shred_expired_retention", "withdraw_consent"]

log = structlog.get_logger("refnet.intake")

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
    await conn.execute("DELETE FROM referral_keys WHERE referral_id = $1", rid)
    # The status-change trigger records this as the reason for `withdrawn` (migration 0005).
    await conn.execute("SELECT set_config('app.transition_reason', $1, true)", reason)
    # youth_key is derived from the name and date of birth: left behind, it would still link this youth
    # to any later referral of theirs (routing continuity, evaluation episodes) after the PII is gone.
    await conn.execute(
        "UPDATE referrals SET pii_shredded_at = coalesce(pii_shredded_at, now()), youth_key = NULL,"
        " status = $2, updated_at = now() WHERE id = $1",
        rid,
        status,
    )
    # An internal event (ids only): routing cancels a live offer and frees the capacity (it owns
    # assignments); notify tells the case manager in-app and sends nothing outward about the youth.
    await enqueue(conn, ReferralWithdrawn(referral_id=str(rid), reason=reason, status=status))
    await audit.record(
        conn, identity, "pii.shred", "referral", str(rid), {"reason": reason, "status": status}
    )
    return status


@post(
    "/v1/referrals/{referral_id:str}/consent/withdraw",
    guards=[any_caller()],
    status_code=200,
    tags=["referrals"],
    summary="Record that the youth withdrew consent: PII is destroyed, the referral stops if not engaged",
)
async def withdraw_consent(
    request: Request[Any, Any, Any], referral_id: str, data: WithdrawIn | None = None
) -> ReferralView:
    caller = await resolve_caller(request)
    if caller.role not in ("partner", "case_manager"):
        raise Problem(403, "Only the referring partner or the case manager can record a withdrawal.")
    try:
        rid = uuid.UUID(referral_id)
    except ValueError:
        raise Problem(404, "No such referral.") from None
    async with transaction(request.app.state.pool, caller.identity) as conn:
        # Row-level security limits this to the caller's own (partner) or assigned (case manager) referral.
        ref = await conn.fetchrow("SELECT * FROM referrals WHERE id = $1 FOR UPDATE", rid)
        if ref is None:
            raise Problem(404, "No such referral.")
        consent = await conn.fetchrow(
            "UPDATE consents SET withdrawn_at = now(), withdrawn_by = $2 WHERE referral_id = $1"
            " AND withdrawn_at IS NULL RETURNING withdrawn_at",
            rid,
            caller.role,
        )
        if consent is None:
            raise Problem(409, "Consent for this referral was already withdrawn.", slug="already-withdrawn")
        await shred(conn, ref, caller.identity, "consent_withdrawn", withdraw_status=True)
        row = await conn.fetchrow("SELECT * FROM referrals WHERE id = $1", rid)
    assert row is not None
    log.info("consent.withdrawn", referral_id=str(rid), by=caller.role)
    return referral_view(row)


async def expire_consents(pool: asyncpg.Pool, batch: int = 200) -> int:
    """Treat expired consent like a withdrawal. Runs periodically; SKIP LOCKED keeps intakes apart."""
    async with transaction(pool, SYSTEM) as conn:
        rows = await conn.fetch(
            "SELECT r.* FROM consents c JOIN referrals r ON r.id = c.referral_id"
            " WHERE c.expires_at <= now() AND c.withdrawn_at IS NULL AND r.pii_shredded_at IS NULL"
            " ORDER BY c.expires_at LIMIT $1 FOR UPDATE OF r SKIP LOCKED",
            batch,
        )
        for ref in rows:
            await conn.execute(
                "UPDATE consents SET withdrawn_at = now(), withdrawn_by = 'expiry' WHERE referral_id = $1",
                ref["id"],
            )
            await shred(conn, ref, SYSTEM, "consent_expired", withdraw_status=True)
    return len(rows)


async def shred_expired_retention(pool: asyncpg.Pool, retention_days: int, batch: int = 200) -> int:
    """Retention: PII of referrals closed longer ago than the retention period is destroyed."""
    async with transaction(pool, SYSTEM) as conn:
        rows = await conn.fetch(
            "SELECT * FROM referrals WHERE status = 'closed' AND pii_shredded_at IS NULL"
            " AND closed_at < now() - make_interval(days => $1) ORDER BY closed_at LIMIT $2 FOR UPDATE SKIP LOCKED",
            retention_days,
            batch,
        )
        for ref in rows:
            await shred(conn, ref, SYSTEM, "retention", withdraw_status=False)
    return len(rows)
