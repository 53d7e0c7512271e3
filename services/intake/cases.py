"""Case work after acceptance: first contact, closing, interventions, follow-up outcomes, history."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from litestar import Controller, Request, get, post
from msgspec import Meta

from services.intake.auth import Caller, any_caller, require_staff, resolve_caller
from services.intake.problems import Problem, invalid_body
from services.intake.referrals import referral_view
from services.intake.schemas import AwareDatetime, Input, ReferralView
from shared import lifecycle
from shared.casework import (
    FOLLOWUPS,
    MEASURES,
    FollowupPoint,
    HousingStability,
    InSchoolOrWork,
    InterventionType,
    OutcomeSource,
    ReArrest,
    ReturnToExploitation,
    Safety,
    followup_schedule,
    local_date,
)
from shared.db import load_sql, transaction
from shared.events import ReferralStatusChanged
from shared.lifecycle import CloseReason
from shared.outbox import enqueue

__all__ = ["CaseController", "check_day", "check_duration"]

_SQL = "services.intake"
# A few minutes' clock skew between a case manager's device and us is not "the future".
_SKEW = timedelta(minutes=5)
_MAX_DURATION = timedelta(days=3 * 365)


# --------------------------------------------------------------------------- bodies and views


class ContactIn(Input):
    # When the first contact happened, if it is being recorded afterwards (default: now).
    contacted_at: AwareDatetime | None = None
    method: Literal["in_person", "phone", "video", "text", "other"] | None = None


class CloseIn(Input):
    reason: CloseReason


class ContactPreferenceIn(Input):
    do_not_contact: bool


class InterventionIn(Input):
    type: InterventionType
    delivered_on: date
    # A partner organisation's id, or "external" for a provider outside the network.
    provider: Annotated[str, Meta(min_length=1, max_length=64)] = "external"
    # ISO 8601 duration, e.g. "PT50M" for a session or "P90D" for a placement.
    duration: timedelta | None = None


class InterventionView(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    referral_id: str
    type: str
    delivered_on: date
    provider: str
    duration: timedelta | None = None
    recorded_at: datetime


class InterventionPage(msgspec.Struct):
    items: list[InterventionView]


class OutcomeIn(Input):
    followup: FollowupPoint
    observed_on: date
    source: OutcomeSource
    re_arrest: ReArrest | None = None
    return_to_exploitation: ReturnToExploitation | None = None
    housing_stability: HousingStability | None = None
    in_school_or_work: InSchoolOrWork | None = None
    safety: Safety | None = None


class OutcomeView(msgspec.Struct, kw_only=True):
    id: str
    followup: str
    measure: str
    value: str
    observed_on: date
    source: str
    recorded_at: datetime


class FollowupView(msgspec.Struct, kw_only=True, omit_defaults=True):
    followup: str
    due_on: date
    reminded_at: datetime | None = None
    completed_at: datetime | None = None


class OutcomePage(msgspec.Struct):
    followups: list[FollowupView]
    items: list[OutcomeView]


class TransitionView(msgspec.Struct, kw_only=True, omit_defaults=True):
    from_status: str
    to_status: str
    # FHIR R4 Task.status of the new status, for systems that speak FHIR.
    fhir_task_status: str
    actor_role: str
    at: datetime
    reason: str | None = None


class HistoryPage(msgspec.Struct):
    items: list[TransitionView]


# --------------------------------------------------------------------------- pure checks


def check_day(day: date, field: str, received_day: date, today: date) -> None:
    """A case record's date: not before the referral arrived, not in the future (agency calendar)."""
    if day > today:
        raise Problem(
            422, f"{field} is in the future.", errors=[{"field": field, "message": "in the future"}]
        )
    if day < received_day:
        raise Problem(
            422,
            f"{field} is before the referral was received.",
            errors=[{"field": field, "message": "before the referral was received"}],
        )


def check_duration(duration: timedelta | None) -> None:
    if duration is not None and not timedelta(0) < duration <= _MAX_DURATION:
        raise Problem(
            422,
            "duration must be positive and at most three years.",
            errors=[{"field": "duration", "message": "must be positive and at most three years"}],
        )


def _in_range(moment: datetime, earliest: datetime, latest: datetime) -> bool:
    try:
        # "0001-01-01T00:00+14:00" is valid ISO 8601 but not representable in UTC: not in range.
        moment = moment.astimezone(UTC)
    except OverflowError:
        return False
    return earliest <= moment <= latest


def _illegal(exc: lifecycle.IllegalTransition) -> Problem:
    allowed = list(exc.allowed)
    return Problem(
        409,
        f"A referral that is {exc.source} cannot become {exc.target}"
        + (f"; from {exc.source} you may move it to: {', '.join(allowed)}." if allowed else "; it is final."),
        extra_fields={"current": exc.source, "requested": exc.target, "allowed": allowed},
        slug="illegal-transition",
    )


# --------------------------------------------------------------------------- helpers


def _rid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, "No such referral.") from None


async def _strict(request: Request[Any, Any, Any], kind: type[Any], optional: bool = False) -> Any:
    """Decode the body exactly (Litestar's own conversion is lenient: "5" would become 5)."""
    raw = await request.body()
    if optional and not raw.strip():
        return None
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.DecodeError as exc:
        raise invalid_body(exc) from None


async def _locked(conn: asyncpg.Connection, rid: uuid.UUID) -> asyncpg.Record:
    # Row-level security decides what the caller sees; nothing means "not yours" and looks like absent.
    ref = await conn.fetchrow("SELECT * FROM referrals WHERE id = $1 FOR UPDATE", rid)
    if ref is None:
        raise Problem(404, "No such referral.")
    return ref


async def _owned(conn: asyncpg.Connection, rid: uuid.UUID, caller: Caller) -> asyncpg.Record:
    """The referral, locked, if the caller is the case manager who accepted it (else 404)."""
    ref = await _locked(conn, rid)
    if ref["status"] in ("received", "assigned", "unroutable"):
        # Visible because an offer is open: the case is not theirs yet. Let the status machine say so.
        return ref
    if not await conn.fetchval("SELECT refnet_cm_owns_case($1)", rid):
        raise Problem(404, "No such referral.")
    return ref


def _one(row: asyncpg.Record | None) -> asyncpg.Record:
    # Rows written or locked in this very transaction: absent would be a bug, never a client error.
    assert row is not None
    return row


def _transition(ref: asyncpg.Record, target: str, caller: Caller) -> None:
    try:
        lifecycle.check(ref["status"], target, caller.role)
    except lifecycle.IllegalTransition as exc:
        raise _illegal(exc) from None


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


# --------------------------------------------------------------------------- endpoints


class CaseController(Controller):
    path = "/v1/referrals"
    tags = ["cases"]

    @post(
        "/{referral_id:str}/contact",
        guards=[require_staff("case_manager")],
        status_code=200,
        summary="Record the first contact with the youth (accepted → engaged); schedules the follow-ups",
    )
    async def contact(
        self, request: Request[Any, Any, Any], referral_id: str, data: ContactIn | None = None
    ) -> ReferralView:
        caller = await resolve_caller(request)
        rid = _rid(referral_id)
        body: ContactIn = await _strict(request, ContactIn, optional=True) or ContactIn()
        now = datetime.now(UTC)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            ref = await _owned(conn, rid, caller)
            _transition(ref, "engaged", caller)
            contacted_at = body.contacted_at or now
            if not _in_range(contacted_at, ref["received_at"], now + _SKEW):
                raise Problem(
                    422,
                    "contacted_at must lie between the referral's receipt and now.",
                    errors=[{"field": "contacted_at", "message": "between receipt and now"}],
                )
            new = _one(
                await conn.fetchrow(
                    "UPDATE referrals SET status = 'engaged', engaged_at = $2, updated_at = now() WHERE id = $1"
                    " RETURNING *",
                    rid,
                    contacted_at,
                )
            )
            await conn.executemany(
                "INSERT INTO followups (referral_id, point, due_on) VALUES ($1, $2, $3)",
                [(rid, point, due) for point, due in followup_schedule(local_date(contacted_at))],
            )
            await _announce(conn, ref, new)
        return referral_view(new)

    @post(
        "/{referral_id:str}/close",
        guards=[require_staff("case_manager")],
        status_code=200,
        summary="Close the case with a reason code; frees the case manager's capacity",
    )
    async def close(self, request: Request[Any, Any, Any], referral_id: str, data: CloseIn) -> ReferralView:
        caller = await resolve_caller(request)
        rid = _rid(referral_id)
        body: CloseIn = await _strict(request, CloseIn)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            ref = await _owned(conn, rid, caller)
            _transition(ref, "closed", caller)
            new = _one(
                await conn.fetchrow(
                    "UPDATE referrals SET status = 'closed', close_reason = $2, outcome = $3, closed_at = now(),"
                    " updated_at = now() WHERE id = $1 RETURNING *",
                    rid,
                    body.reason,
                    lifecycle.CLOSE_CATEGORY[body.reason],
                )
            )
            # The case no longer counts against this case manager (their own row: allowed by RLS).
            await conn.execute(
                "UPDATE case_managers SET active_count = active_count - 1, updated_at = now()"
                " WHERE staff_id = $1 AND active_count > 0",
                caller.id,
            )
            await _announce(conn, ref, new)
        return referral_view(new)

    @post(
        "/{referral_id:str}/contact-preference",
        guards=[any_caller()],
        status_code=200,
        summary="Record the youth's do-not-contact preference (the referring partner or the case manager)",
    )
    async def contact_preference(
        self, request: Request[Any, Any, Any], referral_id: str, data: ContactPreferenceIn
    ) -> ReferralView:
        caller = await resolve_caller(request)
        if caller.role not in ("partner", "case_manager"):
            raise Problem(
                403, "Only the referring partner or the case manager records the youth's preference."
            )
        rid = _rid(referral_id)
        body: ContactPreferenceIn = await _strict(request, ContactPreferenceIn)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            await _locked(conn, rid)
            new = _one(
                await conn.fetchrow(
                    "UPDATE referrals SET do_not_contact = $2, updated_at = now() WHERE id = $1 RETURNING *",
                    rid,
                    body.do_not_contact,
                )
            )
        return referral_view(new)

    @post(
        "/{referral_id:str}/interventions",
        guards=[require_staff("case_manager")],
        status_code=201,
        summary="Record a service delivered to the youth (coded; no free text)",
    )
    async def add_intervention(
        self, request: Request[Any, Any, Any], referral_id: str, data: InterventionIn
    ) -> InterventionView:
        caller = await resolve_caller(request)
        rid = _rid(referral_id)
        body: InterventionIn = await _strict(request, InterventionIn)
        check_duration(body.duration)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            ref = await _owned(conn, rid, caller)
            _require_case(ref)
            check_day(
                body.delivered_on,
                "delivered_on",
                local_date(ref["received_at"]),
                local_date(datetime.now(UTC)),
            )
            provider = await _provider(conn, body.provider)
            row = _one(
                await conn.fetchrow(
                    "INSERT INTO interventions (id, referral_id, type, delivered_on, provider_partner_id, duration,"
                    " recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                    uuid.uuid4(),
                    rid,
                    body.type,
                    body.delivered_on,
                    provider,
                    body.duration,
                    caller.id,
                )
            )
        return _intervention_view(row)

    @get(
        "/{referral_id:str}/interventions",
        guards=[require_staff("case_manager", "supervisor")],
        summary="Services recorded for the youth (their case manager; supervisors of the region)",
    )
    async def interventions(self, request: Request[Any, Any, Any], referral_id: str) -> InterventionPage:
        caller = await resolve_caller(request)
        rid = _rid(referral_id)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            await _visible(conn, rid)
            rows = await conn.fetch(
                "SELECT * FROM interventions WHERE referral_id = $1 ORDER BY delivered_on, recorded_at", rid
            )
        return InterventionPage(items=[_intervention_view(r) for r in rows])

    @post(
        "/{referral_id:str}/outcomes",
        guards=[require_staff("case_manager")],
        status_code=201,
        summary="Record follow-up outcomes (one or more measures observed on one day from one source)",
    )
    async def add_outcomes(
        self, request: Request[Any, Any, Any], referral_id: str, data: OutcomeIn
    ) -> OutcomePage:
        caller = await resolve_caller(request)
        rid = _rid(referral_id)
        body: OutcomeIn = await _strict(request, OutcomeIn)
        measures = [(m, v) for m in MEASURES if (v := getattr(body, m)) is not None]
        if not measures:
            raise Problem(
                422,
                f"Give at least one measure: {', '.join(MEASURES)}.",
                errors=[{"field": "", "message": f"at least one of {', '.join(MEASURES)}"}],
            )
        async with transaction(request.app.state.pool, caller.identity) as conn:
            ref = await _owned(conn, rid, caller)
            _require_case(ref)
            check_day(
                body.observed_on, "observed_on", local_date(ref["received_at"]), local_date(datetime.now(UTC))
            )
            recorded = await conn.fetch(
                "SELECT measure FROM outcomes WHERE referral_id = $1 AND point = $2 AND measure = any($3::text[])",
                rid,
                body.followup,
                [m for m, _ in measures],
            )
            if recorded:
                taken = sorted(r["measure"] for r in recorded)
                raise Problem(
                    409,
                    f"Already recorded at the {body.followup} follow-up: {', '.join(taken)}.",
                    extra_fields={"followup": body.followup, "recorded": taken},
                    slug="outcome-recorded",
                )
            rows = []
            for measure, value in measures:
                rows.append(
                    _one(
                        await conn.fetchrow(
                            "INSERT INTO outcomes (id, referral_id, point, measure, value, observed_on, source,"
                            " recorded_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
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
                )
            await conn.execute(
                "UPDATE followups SET completed_at = coalesce(completed_at, now()) WHERE referral_id = $1 AND point = $2",
                rid,
                body.followup,
            )
            followups = await conn.fetch("SELECT * FROM followups WHERE referral_id = $1", rid)
        return OutcomePage(followups=_followup_views(followups), items=[_outcome_view(r) for r in rows])

    @get(
        "/{referral_id:str}/outcomes",
        guards=[require_staff("case_manager", "supervisor")],
        summary="The follow-up schedule and the outcomes recorded (their case manager; region supervisors)",
    )
    async def outcomes(self, request: Request[Any, Any, Any], referral_id: str) -> OutcomePage:
        caller = await resolve_caller(request)
        rid = _rid(referral_id)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            await _visible(conn, rid)
            followups = await conn.fetch("SELECT * FROM followups WHERE referral_id = $1", rid)
            rows = await conn.fetch(
                "SELECT * FROM outcomes WHERE referral_id = $1 ORDER BY observed_on, recorded_at, measure",
                rid,
            )
        return OutcomePage(followups=_followup_views(followups), items=[_outcome_view(r) for r in rows])

    @get(
        "/{referral_id:str}/history",
        guards=[require_staff("case_manager", "supervisor", "admin")],
        summary="Every status change of the referral: when, from, to, by which role, why (reason code)",
    )
    async def history(self, request: Request[Any, Any, Any], referral_id: str) -> HistoryPage:
        caller = await resolve_caller(request)
        rid = _rid(referral_id)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            await _visible(conn, rid)
            rows = await conn.fetch(load_sql(_SQL, "referral_history"), rid)
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
                for r in rows
            ]
        )


async def _visible(conn: asyncpg.Connection, rid: uuid.UUID) -> None:
    if await conn.fetchval("SELECT 1 FROM referrals WHERE id = $1", rid) is None:
        raise Problem(404, "No such referral.")


async def _provider(conn: asyncpg.Connection, provider: str) -> uuid.UUID | None:
    if provider == "external":
        return None
    try:
        pid = uuid.UUID(provider)
    except ValueError:
        pid = None
    if pid is None or await conn.fetchval("SELECT 1 FROM partners WHERE id = $1", pid) is None:
        raise Problem(
            422,
            'provider must be a partner\'s id or "external".',
            errors=[{"field": "provider", "message": 'a partner id or "external"'}],
        )
    return pid


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
