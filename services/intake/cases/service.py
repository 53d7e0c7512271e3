"""Case work after acceptance: first contact, closing, interventions, follow-up outcomes, history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from services.intake.cases.rules import SKEW, check_day, check_duration, illegal, in_range
from services.intake.cases.schemas import (
    CloseIn,
    ContactIn,
    FollowupView,
    HistoryPage,
    InterventionIn,
    InterventionPage,
    InterventionView,
    OutcomeIn,
    OutcomePage,
    OutcomeView,
    TransitionView,
)
from services.intake.core.auth import Caller
from services.intake.core.problems import Problem
from services.intake.referrals.schemas import ReferralView
from services.intake.referrals.service import referral_view
from shared import lifecycle
from shared.casework import FOLLOWUPS, MEASURES, followup_schedule, local_date
from shared.db import load_sql
from shared.events import ReferralStatusChanged
from shared.outbox import enqueue

__all__ = [
    "add_intervention",
    "add_outcomes",
    "close",
    "contact",
    "history",
    "interventions",
    "outcomes",
    "set_contact_preference",
]

_PKG = "services.intake.cases"
_LOCK_REFERRAL = load_sql(_PKG, "lock_referral")
_CM_OWNS_CASE = load_sql(_PKG, "cm_owns_case")
_ENGAGE_REFERRAL = load_sql(_PKG, "engage_referral")
_INSERT_FOLLOWUP = load_sql(_PKG, "insert_followup")
_CLOSE_REFERRAL = load_sql(_PKG, "close_referral")
_RELEASE_CASE_CAPACITY = load_sql(_PKG, "release_case_capacity")
_SET_CONTACT_PREFERENCE = load_sql(_PKG, "set_contact_preference")
_INSERT_INTERVENTION = load_sql(_PKG, "insert_intervention")
_INTERVENTIONS = load_sql(_PKG, "interventions")
_RECORDED_MEASURES = load_sql(_PKG, "recorded_measures")
_INSERT_OUTCOME = load_sql(_PKG, "insert_outcome")
_COMPLETE_FOLLOWUP = load_sql(_PKG, "complete_followup")
_FOLLOWUPS = load_sql(_PKG, "followups")
_OUTCOMES = load_sql(_PKG, "outcomes")
_HISTORY = load_sql(_PKG, "referral_history")
_REFERRAL_VISIBLE = load_sql(_PKG, "referral_visible")
_PARTNER_EXISTS = load_sql(_PKG, "partner_exists")


# --------------------------------------------------------------------------- helpers


def _rid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, "No such referral.") from None


async def _locked(conn: asyncpg.Connection, rid: uuid.UUID) -> asyncpg.Record:
    # Row-level security decides what the caller sees; nothing means "not yours" and looks like absent.
    ref = await conn.fetchrow(_LOCK_REFERRAL, rid)
    if ref is None:
        raise Problem(404, "No such referral.")
    return ref


async def _owned(conn: asyncpg.Connection, rid: uuid.UUID) -> asyncpg.Record:
    """The referral, locked, if the caller is the case manager who accepted it (else 404)."""
    ref = await _locked(conn, rid)
    if ref["status"] in ("received", "assigned", "unroutable"):
        # Visible because an offer is open: the case is not theirs yet. Let the status machine say so.
        return ref
    if not await conn.fetchval(_CM_OWNS_CASE, rid):
        raise Problem(404, "No such referral.")
    return ref


async def _visible(conn: asyncpg.Connection, rid: uuid.UUID) -> None:
    if await conn.fetchval(_REFERRAL_VISIBLE, rid) is None:
        raise Problem(404, "No such referral.")


def _one(row: asyncpg.Record | None) -> asyncpg.Record:
    # Rows written or locked in this very transaction: absent would be a bug, never a client error.
    assert row is not None
    return row


def _transition(ref: asyncpg.Record, target: str, caller: Caller) -> None:
    try:
        lifecycle.check(ref["status"], target, caller.role)
    except lifecycle.IllegalTransition as exc:
        raise illegal(exc) from None


async def _announce(conn: asyncpg.Connection, ref: asyncpg.Record, new: asyncpg.Record) -> None:
    """Tell the referring partner (closed loop), unless consent was withdrawn: then nothing leaves."""
    if new["pii_shredded_at"] is not None:
        return
    await enqueue(
        conn,
        ReferralStatusChanged(
            referral_id=str(new["id"]),
            partner_id=str(new["partner_id"]),
            status=new["status"],
            previous_status=ref["status"],
            close_reason=new["close_reason"],
        ),
    )


def _require_case(ref: asyncpg.Record) -> None:
    if ref["engaged_at"] is None:
        raise Problem(
            409,
            f"Case records need a first contact; this referral is {ref['status']}.",
            extra_fields={"status": ref["status"]},
            slug="no-first-contact",
        )


async def _provider(conn: asyncpg.Connection, provider: str) -> uuid.UUID | None:
    if provider == "external":
        return None
    try:
        pid = uuid.UUID(provider)
    except ValueError:
        pid = None
    if pid is None or await conn.fetchval(_PARTNER_EXISTS, pid) is None:
        raise Problem(
            422,
            'provider must be a partner\'s id or "external".',
            errors=[{"field": "provider", "message": 'a partner id or "external"'}],
        )
    return pid


# --------------------------------------------------------------------------- status changes


async def contact(
    conn: asyncpg.Connection, caller: Caller, referral_id: str, body: ContactIn
) -> ReferralView:
    """First contact with the youth: accepted → engaged, and the follow-ups are scheduled."""
    rid = _rid(referral_id)
    now = datetime.now(UTC)
    ref = await _owned(conn, rid)
    _transition(ref, "engaged", caller)
    contacted_at = body.contacted_at or now
    if not in_range(contacted_at, ref["received_at"], now + SKEW):
        raise Problem(
            422,
            "contacted_at must lie between the referral's receipt and now.",
            errors=[{"field": "contacted_at", "message": "between receipt and now"}],
        )
    new = _one(await conn.fetchrow(_ENGAGE_REFERRAL, rid, contacted_at))
    await conn.executemany(
        _INSERT_FOLLOWUP, [(rid, point, due) for point, due in followup_schedule(local_date(contacted_at))]
    )
    await _announce(conn, ref, new)
    return referral_view(new)


async def close(conn: asyncpg.Connection, caller: Caller, referral_id: str, body: CloseIn) -> ReferralView:
    """Close the case with a reason code; frees the case manager's capacity."""
    rid = _rid(referral_id)
    ref = await _owned(conn, rid)
    _transition(ref, "closed", caller)
    new = _one(await conn.fetchrow(_CLOSE_REFERRAL, rid, body.reason, lifecycle.CLOSE_CATEGORY[body.reason]))
    await conn.execute(_RELEASE_CASE_CAPACITY, caller.id)
    await _announce(conn, ref, new)
    return referral_view(new)


async def set_contact_preference(
    conn: asyncpg.Connection, caller: Caller, referral_id: str, do_not_contact: bool
) -> ReferralView:
    """The youth's do-not-contact preference, as the referring partner or the case manager records it."""
    if caller.role not in ("partner", "case_manager"):
        raise Problem(403, "Only the referring partner or the case manager records the youth's preference.")
    rid = _rid(referral_id)
    await _locked(conn, rid)
    return referral_view(_one(await conn.fetchrow(_SET_CONTACT_PREFERENCE, rid, do_not_contact)))


# --------------------------------------------------------------------------- case records


async def add_intervention(
    conn: asyncpg.Connection, caller: Caller, referral_id: str, body: InterventionIn
) -> InterventionView:
    rid = _rid(referral_id)
    check_duration(body.duration)
    ref = await _owned(conn, rid)
    _require_case(ref)
    check_day(
        body.delivered_on, "delivered_on", local_date(ref["received_at"]), local_date(datetime.now(UTC))
    )
    provider = await _provider(conn, body.provider)
    row = await conn.fetchrow(
        _INSERT_INTERVENTION,
        uuid.uuid4(),
        rid,
        body.type,
        body.delivered_on,
        provider,
        body.duration,
        caller.id,
    )
    return _intervention_view(_one(row))


async def interventions(conn: asyncpg.Connection, referral_id: str) -> InterventionPage:
    rid = _rid(referral_id)
    await _visible(conn, rid)
    return InterventionPage(items=[_intervention_view(r) for r in await conn.fetch(_INTERVENTIONS, rid)])


async def add_outcomes(
    conn: asyncpg.Connection, caller: Caller, referral_id: str, body: OutcomeIn
) -> OutcomePage:
    """One or more measures observed on one day from one source, at one follow-up (each recorded once)."""
    rid = _rid(referral_id)
    measures = [(m, v) for m in MEASURES if (v := getattr(body, m)) is not None]
    if not measures:
        raise Problem(
            422,
            f"Give at least one measure: {', '.join(MEASURES)}.",
            errors=[{"field": "", "message": f"at least one of {', '.join(MEASURES)}"}],
        )
    ref = await _owned(conn, rid)
    _require_case(ref)
    check_day(body.observed_on, "observed_on", local_date(ref["received_at"]), local_date(datetime.now(UTC)))
    recorded = await conn.fetch(_RECORDED_MEASURES, rid, body.followup, [m for m, _ in measures])
    if recorded:
        taken = sorted(r["measure"] for r in recorded)
        raise Problem(
            409,
            f"Already recorded at the {body.followup} follow-up: {', '.join(taken)}.",
            extra_fields={"followup": body.followup, "recorded": taken},
            slug="outcome-recorded",
        )
    rows = [
        _one(
            await conn.fetchrow(
                _INSERT_OUTCOME,
                uuid.uuid4(),
                rid,
                body.followup,
                measure,
                value,
                body.observed_on,
                body.source,
                caller.id,
            )
        )
        for measure, value in measures
    ]
    await conn.execute(_COMPLETE_FOLLOWUP, rid, body.followup)
    followups = await conn.fetch(_FOLLOWUPS, rid)
    return OutcomePage(followups=_followup_views(followups), items=[_outcome_view(r) for r in rows])


async def outcomes(conn: asyncpg.Connection, referral_id: str) -> OutcomePage:
    rid = _rid(referral_id)
    await _visible(conn, rid)
    followups = await conn.fetch(_FOLLOWUPS, rid)
    rows = await conn.fetch(_OUTCOMES, rid)
    return OutcomePage(followups=_followup_views(followups), items=[_outcome_view(r) for r in rows])


async def history(conn: asyncpg.Connection, referral_id: str) -> HistoryPage:
    """Every status change: when, from, to, by which role, why (reason code)."""
    rid = _rid(referral_id)
    await _visible(conn, rid)
    return HistoryPage(
        items=[
            TransitionView(
                from_status=r["from_status"],
                to_status=r["to_status"],
                fhir_task_status=lifecycle.fhir_task_status(r["to_status"]),
                actor_role=r["actor_role"],
                at=r["at"],
                reason=r["reason"],
            )
            for r in await conn.fetch(_HISTORY, rid)
        ]
    )


def _intervention_view(r: asyncpg.Record) -> InterventionView:
    return InterventionView(
        id=str(r["id"]),
        referral_id=str(r["referral_id"]),
        type=r["type"],
        delivered_on=r["delivered_on"],
        provider=str(r["provider_partner_id"]) if r["provider_partner_id"] else "external",
        duration=r["duration"],
        recorded_at=r["recorded_at"],
    )


def _outcome_view(r: asyncpg.Record) -> OutcomeView:
    return OutcomeView(
        id=str(r["id"]),
        followup=r["point"],
        measure=r["measure"],
        value=r["value"],
        observed_on=r["observed_on"],
        source=r["source"],
        recorded_at=r["recorded_at"],
    )


def _followup_views(rows: list[asyncpg.Record]) -> list[FollowupView]:
    ordered = sorted(rows, key=lambda r: FOLLOWUPS.index(r["point"]))
    return [
        FollowupView(
            followup=r["point"],
            due_on=r["due_on"],
            reminded_at=r["reminded_at"],
            completed_at=r["completed_at"],
        )
        for r in ordered
    ]
