"""Supervisor and admin routing endpoints: case manager profiles, the queue, manual assignment, explanations."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
from litestar import Controller, Request, get, patch, post
from litestar.params import Parameter
from msgspec import Meta

from services.intake import roster
from services.intake.auth import Caller, hash_password, require_staff, resolve_caller
from services.intake.explain import Explained, display_name, explain_automatic, explain_manual
from services.intake.problems import Problem, invalid_body
from services.intake.schemas import Input
from services.routing.manual import ManualAssignError, ManualAssignment, assign_manually
from services.routing.rules import effective_rules
from shared import audit
from shared.codes import NeedCode, UnroutableReason
from shared.db import load_sql, transaction
from shared.decisions import DecisionRecord, ManualRecord
from shared.regions import Catalogue

__all__ = ["ROUTES", "RoutingAdminController", "RoutingExplanationController"]

_LOCAL_TZ = ZoneInfo("America/Los_Angeles")
_ROUTING_SQL = "services.routing"
# Staff-written: must say something, and hold no NUL (which PostgreSQL text cannot store).
Reason = Annotated[str, Meta(min_length=3, max_length=1000, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$")]


class CaseManagerIn(Input):
    email: roster.Email
    name: roster.Name
    regions: Annotated[list[str], Meta(min_length=1, max_length=20)]
    needs: Annotated[list[NeedCode], Meta(min_length=1, max_length=13)]
    capacity: Annotated[int, Meta(ge=0, le=1000)]
    languages: Annotated[list[roster.Language], Meta(min_length=1, max_length=20)] = msgspec.field(
        default_factory=lambda: ["en"]
    )
    status: roster.CaseManagerStatus = "active"
    away_until: date | None = None
    specialisms: Annotated[list[roster.Specialism], Meta(max_length=4)] = msgspec.field(default_factory=list)
    # Omitted: one is generated and shown once in the response.
    password: Annotated[str, Meta(min_length=12, max_length=1024)] | None = None


class CaseManagerPatch(Input):
    """Only the fields given change. Supervisors may change load, availability and skills, not identity."""

    email: roster.Email | None = None
    name: roster.Name | None = None
    regions: Annotated[list[str], Meta(min_length=1, max_length=20)] | None = None
    needs: Annotated[list[NeedCode], Meta(min_length=1, max_length=13)] | None = None
    capacity: Annotated[int, Meta(ge=0, le=1000)] | None = None
    languages: Annotated[list[roster.Language], Meta(min_length=1, max_length=20)] | None = None
    status: roster.CaseManagerStatus | None = None
    # null clears it; absent leaves it.
    away_until: date | msgspec.UnsetType | None = msgspec.UNSET
    specialisms: Annotated[list[roster.Specialism], Meta(max_length=4)] | None = None


class CaseManagerCreated(roster.ProfileView, kw_only=True):
    password: str | None = None


class CaseManagerPage(msgspec.Struct):
    items: list[roster.ProfileView]


class QueueItem(msgspec.Struct, kw_only=True):
    referral_id: str
    region: str | None
    needs: list[str]
    language: str
    urgency: str
    age_years: int
    reason: str | None
    received_at: datetime
    queued_at: datetime | None
    waiting_seconds: int
    failed_offers: int


class QueuePage(msgspec.Struct):
    items: list[QueueItem]


class ManualAssignIn(Input):
    case_manager_id: str
    reason: Reason


class Person(msgspec.Struct):
    id: str
    name: str


class CandidateView(msgspec.Struct, kw_only=True):
    case_manager: Person
    eligible: bool
    score: float | None
    reasons: list[str]


class DecisionView(msgspec.Struct, kw_only=True, omit_defaults=True):
    decided_at: datetime
    kind: str
    outcome: str
    policy_version: str | None
    chosen: Person | None
    summary: str
    details: list[str]
    decided_by: Person | None = None
    candidates: list[CandidateView] = msgspec.field(default_factory=list)


class OfferView(msgspec.Struct, kw_only=True):
    assignment_id: str
    case_manager: Person
    state: str
    offered_at: datetime
    respond_by: datetime
    responded_at: datetime | None


class RoutingExplanation(msgspec.Struct, kw_only=True):
    referral_id: str
    status: str
    region: str | None
    region_name: str | None
    urgency: str
    needs: list[str]
    summary: str
    decisions: list[DecisionView]
    offers: list[OfferView]


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, f"No such {what}.") from None


def _roster_problem(exc: roster.RosterError) -> Problem:
    errors = [{"field": e.field, "message": e.message} for e in exc.errors]
    return Problem(exc.status, "; ".join(e["message"] for e in errors), errors=errors)


def _check(profile: roster.Profile, regions: Catalogue) -> None:
    errors = roster.check_profile(profile, regions.codes, datetime.now(_LOCAL_TZ).date())
    if errors:
        raise _roster_problem(roster.RosterError(errors))


def _strict(body: bytes, cls: type[Any]) -> Any:
    # Litestar converts bodies leniently; decode the same bytes strictly, as referrals.create does.
    try:
        return msgspec.json.decode(body, type=cls)
    except msgspec.DecodeError as exc:
        raise invalid_body(exc) from None


def _scope_region(caller: Caller, region: str | None, regions: Catalogue) -> str | None:
    """Supervisors see their own region only; admins any (or all, when none is asked for)."""
    if region is not None and region not in regions.codes:
        raise Problem(
            422,
            "Unknown region.",
            errors=[{"field": "region", "message": f"must be one of {', '.join(regions.codes)}"}],
        )
    if caller.role == "supervisor":
        if region is not None and region != caller.region:
            raise Problem(403, "Supervisors see their own region only.")
        return caller.region
    return region


class RoutingAdminController(Controller):
    path = "/v1/admin"
    tags = ["routing"]
    guards = [require_staff("supervisor", "admin")]

    @get("/case-managers", summary="Case manager profiles (supervisor: their region)")
    async def list_case_managers(
        self,
        request: Request[Any, Any, Any],
        region: str | None = None,
        status: Literal["active", "away", "inactive"] | None = None,
    ) -> CaseManagerPage:
        caller = await resolve_caller(request)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            items = await roster.list_profiles(
                conn, _scope_region(caller, region, request.app.state.regions), status
            )
        return CaseManagerPage(items)

    @post(
        "/case-managers",
        status_code=201,
        guards=[require_staff("admin")],
        summary="Create a case manager (staff account and routing profile)",
    )
    async def create_case_manager(
        self, request: Request[Any, Any, Any], data: CaseManagerIn
    ) -> CaseManagerCreated:
        caller = await resolve_caller(request)
        data = _strict(await request.body(), CaseManagerIn)
        profile = roster.Profile(
            email=data.email,
            name=data.name,
            regions=data.regions,
            needs=data.needs,
            languages=data.languages,
            capacity=data.capacity,
            status=data.status,
            away_until=data.away_until,
            specialisms=data.specialisms,
        )
        _check(profile, request.app.state.regions)
        generated = None if data.password else secrets.token_urlsafe(12)
        password_hash = hash_password(data.password or generated or "")
        try:
            async with transaction(request.app.state.pool, caller.identity) as conn:
                view, _ = await roster.save_profile(
                    conn, caller.identity, profile, via="api", password_hash=password_hash
                )
        except roster.RosterError as exc:
            raise _roster_problem(exc) from None
        return CaseManagerCreated(**msgspec.structs.asdict(view), password=generated)

    @get("/case-managers/{case_manager_id:str}", summary="One case manager's profile")
    async def get_case_manager(
        self, request: Request[Any, Any, Any], case_manager_id: str
    ) -> roster.ProfileView:
        caller = await resolve_caller(request)
        cid = _uuid(case_manager_id, "case manager")
        async with transaction(request.app.state.pool, caller.identity) as conn:
            view = await roster.get_profile(conn, str(cid))
        if view is None or (caller.role == "supervisor" and caller.region not in view.regions):
            raise Problem(404, "No such case manager.")
        return view

    @patch("/case-managers/{case_manager_id:str}", summary="Change a case manager's profile")
    async def update_case_manager(
        self, request: Request[Any, Any, Any], case_manager_id: str, data: CaseManagerPatch
    ) -> roster.ProfileView:
        caller = await resolve_caller(request)
        cid = _uuid(case_manager_id, "case manager")
        data = _strict(await request.body(), CaseManagerPatch)
        if caller.role == "supervisor" and (data.email or data.name or data.regions):
            raise Problem(403, "Only an administrator can change a case manager's email, name or regions.")
        try:
            async with transaction(request.app.state.pool, caller.identity) as conn:
                current = await roster.get_profile(conn, str(cid))
                if current is None or (caller.role == "supervisor" and caller.region not in current.regions):
                    raise Problem(404, "No such case manager.")
                status = data.status or current.status
                away_until = current.away_until if data.away_until is msgspec.UNSET else data.away_until
                if data.status is not None and data.status != "away" and data.away_until is msgspec.UNSET:
                    away_until = None  # back at work: the old return date no longer applies
                profile = roster.Profile(
                    email=data.email or current.email,
                    name=data.name or current.name,
                    regions=data.regions or current.regions,
                    needs=data.needs or current.needs,
                    languages=data.languages or current.languages,
                    capacity=current.capacity if data.capacity is None else data.capacity,
                    status=status,
                    away_until=away_until,
                    specialisms=current.specialisms if data.specialisms is None else data.specialisms,
                )
                _check(profile, request.app.state.regions)
                view, _ = await roster.save_profile(
                    conn, caller.identity, profile, via="api", staff_id=str(cid)
                )
        except roster.RosterError as exc:
            raise _roster_problem(exc) from None
        return view

    @get("/queue", summary="Unroutable referrals, most urgent then longest waiting first")
    async def queue(
        self,
        request: Request[Any, Any, Any],
        region: str | None = None,
        reason: UnroutableReason | None = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    ) -> QueuePage:
        caller = await resolve_caller(request)
        scoped = _scope_region(caller, region, request.app.state.regions)
        if caller.role == "supervisor" and not scoped:
            return QueuePage([])
        now = datetime.now(UTC)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            rows = await conn.fetch(load_sql(_ROUTING_SQL, "queue"), scoped, reason, limit)
        return QueuePage(
            [
                QueueItem(
                    referral_id=str(r["id"]),
                    region=r["region"],
                    needs=list(r["needs"]),
                    language=r["language"],
                    urgency=r["urgency"],
                    age_years=r["age_years"],
                    reason=r["unroutable_reason"],
                    received_at=r["received_at"],
                    queued_at=r["queued_at"],
                    waiting_seconds=int((now - r["received_at"]).total_seconds()),
                    failed_offers=r["failed_offers"],
                )
                for r in rows
            ]
        )

    @post(
        "/referrals/{referral_id:str}/assign",
        status_code=201,
        summary="Assign a referral by hand (may exceed capacity; the reason is recorded and audited)",
    )
    async def assign(
        self, request: Request[Any, Any, Any], referral_id: str, data: ManualAssignIn
    ) -> ManualAssignment:
        caller = await resolve_caller(request)
        rid = _uuid(referral_id, "referral")
        data = _strict(await request.body(), ManualAssignIn)
        try:
            cid = uuid.UUID(data.case_manager_id)
        except ValueError:
            raise Problem(
                422,
                "No such case manager.",
                errors=[{"field": "case_manager_id", "message": "not a case manager id"}],
            ) from None
        rules = effective_rules(request.app.state.settings)
        try:
            async with transaction(request.app.state.pool, caller.identity) as conn:
                return await assign_manually(conn, caller.identity, rid, cid, data.reason.strip(), rules)
        except ManualAssignError as exc:
            errors = [{"field": exc.field, "message": str(exc)}] if exc.field else None
            raise Problem(exc.status, str(exc), errors=errors) from None
        except asyncpg.UniqueViolationError:
            # Routing offered it to someone in the same instant: the partial unique index said no.
            raise Problem(409, "The referral was just offered to someone else; reload and retry.") from None


class RoutingExplanationController(Controller):
    path = "/v1/referrals"
    tags = ["routing"]
    guards = [require_staff("supervisor", "admin")]

    @get("/{referral_id:str}/routing", summary="Why the referral went where it went, in plain words")
    async def explain(self, request: Request[Any, Any, Any], referral_id: str) -> RoutingExplanation:
        caller = await resolve_caller(request)
        rid = _uuid(referral_id, "referral")
        catalogue: Catalogue = request.app.state.regions
        async with transaction(request.app.state.pool, caller.identity) as conn:
            ref = await conn.fetchrow(
                "SELECT id, status, region, needs, language, urgency FROM referrals WHERE id = $1", rid
            )
            if ref is None or (caller.role == "supervisor" and ref["region"] != caller.region):
                raise Problem(404, "No such referral.")
            decisions = await conn.fetch(
                "SELECT decided_at, kind, outcome, chosen_id, detail, policy_version, actor_id, reason"
                " FROM routing_decisions WHERE referral_id = $1 ORDER BY decided_at, id",
                rid,
            )
            offers = await conn.fetch(
                "SELECT id, case_manager_id, state, offered_at, respond_by, responded_at FROM assignments"
                " WHERE referral_id = $1 ORDER BY offered_at, id",
                rid,
            )
            names = await _names(conn, decisions, offers)
            await audit.record(conn, caller.identity, "routing.explanation_viewed", "referral", str(rid))
        region_name = next((r.name for r in catalogue.regions if r.code == ref["region"]), ref["region"])
        views = [_decision_view(d, names, region_name or "the region", ref["language"]) for d in decisions]
        offer_views = [
            OfferView(
                assignment_id=str(o["id"]),
                case_manager=_person(str(o["case_manager_id"]), names),
                state=o["state"],
                offered_at=o["offered_at"],
                respond_by=o["respond_by"],
                responded_at=o["responded_at"],
            )
            for o in offers
        ]
        return RoutingExplanation(
            referral_id=str(rid),
            status=ref["status"],
            region=ref["region"],
            region_name=region_name,
            urgency=ref["urgency"],
            needs=list(ref["needs"]),
            summary=_current(ref["status"], views, offer_views),
            decisions=views,
            offers=offer_views,
        )


async def _names(
    conn: asyncpg.Connection, decisions: list[asyncpg.Record], offers: list[asyncpg.Record]
) -> dict[str, str]:
    ids: set[str] = {str(o["case_manager_id"]) for o in offers}
    for d in decisions:
        if d["chosen_id"]:
            ids.add(str(d["chosen_id"]))
        if d["actor_id"]:
            ids.add(str(d["actor_id"]))
        detail = d["detail"] if isinstance(d["detail"], dict) else {}
        ids.update(str(c.get("id")) for c in detail.get("candidates", []) if isinstance(c, dict))
        inputs = detail.get("inputs", {})
        if isinstance(inputs, dict):
            ids.update(str(i) for i in inputs.get("excluded", []))
        ids.update(str(i) for i in detail.get("taken_meanwhile", []))
    valid = [i for i in ids if _is_uuid(i)]
    # Row-level security shows a supervisor the names of their region's staff; others stay short ids.
    rows = await conn.fetch("SELECT id, display_name FROM staff WHERE id = ANY ($1::uuid[])", valid)
    return {str(r["id"]): r["display_name"] for r in rows if r["display_name"]}


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _person(staff_id: str, names: dict[str, str]) -> Person:
    return Person(staff_id, display_name(staff_id, names))


def _decision_view(d: asyncpg.Record, names: dict[str, str], region: str, language: str) -> DecisionView:
    chosen = _person(str(d["chosen_id"]), names) if d["chosen_id"] else None
    candidates: list[CandidateView] = []
    explained: Explained
    decided_by = None
    try:
        if d["kind"] == "manual":
            manual = msgspec.convert(d["detail"], ManualRecord)
            decided_by = _person(str(d["actor_id"]), names) if d["actor_id"] else None
            actor = decided_by.name if decided_by else "a supervisor"
            explained = explain_manual(manual, d["reason"] or "", actor, names, language)
        else:
            record = msgspec.convert(d["detail"], DecisionRecord)
            explained = explain_automatic(record, names, region)
            candidates = [
                CandidateView(
                    case_manager=_person(s.id, names),
                    eligible=s.eligible,
                    score=round(s.score, 2) if s.eligible else None,
                    reasons=list(s.reasons),
                )
                for s in record.candidates
            ]
    except msgspec.ValidationError:
        explained = Explained("Decided by an earlier version of routing that stored no explanation.", ())
    return DecisionView(
        decided_at=d["decided_at"],
        kind=d["kind"],
        outcome=d["outcome"],
        policy_version=d["policy_version"],
        chosen=chosen,
        summary=explained.summary,
        details=list(explained.details),
        decided_by=decided_by,
        candidates=candidates,
    )


def _current(status: str, decisions: list[DecisionView], offers: list[OfferView]) -> str:
    """One sentence for where the referral stands now."""
    accepted = next((o for o in reversed(offers) if o.state == "accepted"), None)
    if status in ("accepted", "engaged", "closed") and accepted is not None:
        when = (accepted.responded_at or accepted.offered_at).date().isoformat()
        return f"Accepted by {accepted.case_manager.name} on {when}; the referral is {status}."
    if status == "withdrawn":
        return "Withdrawn (consent withdrawn or expired); it is no longer routed."
    if status == "received" and not decisions:
        return "Received; routing has not decided yet."
    if status == "assigned":
        offer = next((o for o in reversed(offers) if o.state == "offered"), None)
        if offer is not None:
            return (
                f"Offered to {offer.case_manager.name}, who has until {offer.respond_by.isoformat(timespec='minutes')}"
                " to answer. " + (decisions[-1].summary if decisions else "")
            ).strip()
    return decisions[-1].summary if decisions else f"The referral is {status}."


ROUTES = [RoutingAdminController, RoutingExplanationController]
