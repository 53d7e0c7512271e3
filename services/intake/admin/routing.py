"""The routing queue, manual assignment and the explanation of routing decisions, for supervisors and admins.

A manual assignment is routing's write: intake asks routing to make it by a NATS command (routing checks
the actor, writes the offer, the decision record and the audit record in one transaction) and answers
with routing's outcome. Explanations are read from the stored decision records.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from services.intake.admin.explain import Explained, display_name, explain_automatic, explain_manual
from services.intake.admin.schemas import (
    CandidateView,
    DecisionView,
    ManualAssignIn,
    OfferView,
    Person,
    QueueItem,
    QueuePage,
    RoutingExplanation,
)
from services.intake.admin.service import unavailable
from services.intake.cases import notes
from services.intake.core.auth import Caller, scope_region
from services.intake.core.keys import Keys
from services.intake.core.problems import Problem
from shared import audit
from shared.commands import AssignCommand, CommandUnavailable, ManualAssignment, request_assignment
from shared.db import load_sql
from shared.decisions import DecisionRecord, ManualRecord
from shared.regions import Catalogue

__all__ = ["assign", "explain", "queue", "queue_rows"]

_PKG = "services.intake.admin"
_QUEUE = load_sql(_PKG, "queue")
_EXPLAINED_REFERRAL = load_sql(_PKG, "explained_referral")
_ROUTING_DECISIONS = load_sql(_PKG, "routing_decisions")
_REFERRAL_OFFERS = load_sql(_PKG, "referral_offers")
_STAFF_NAMES = load_sql(_PKG, "staff_names")


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, f"No such {what}.") from None


# --------------------------------------------------------------------------- the queue


async def queue_rows(
    conn: asyncpg.Connection,
    region: str | None,
    reason: str | None,
    limit: int,
    *,
    out_of_area: bool = False,
) -> list[asyncpg.Record]:
    """Unroutable referrals of a region (or all the caller may see), most urgent then longest waiting;
    ``out_of_area`` adds those outside every region to a region's."""
    return await conn.fetch(_QUEUE, region, reason, limit, out_of_area)


async def queue(
    conn: asyncpg.Connection,
    caller: Caller,
    region_codes: Collection[str],
    region: str | None,
    reason: str | None,
    limit: int,
) -> QueuePage:
    scoped = scope_region(caller, region, region_codes)
    if caller.role == "supervisor" and not scoped:
        return QueuePage([])
    now = datetime.now(UTC)
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
            # A supervisor's queue holds their region's referrals and the out-of-area ones, which no
            # region owns and every supervisor is told of (docs/api.md).
            for r in await queue_rows(
                conn, scoped, reason, limit, out_of_area=caller.role == "supervisor" and region is None
            )
        ]
    )


# --------------------------------------------------------------------------- manual assignment


async def assign(
    nc: Any,
    caller: Caller,
    referral_id: str,
    data: ManualAssignIn,
    request_id: str = "",
    *,
    pool: asyncpg.Pool,
    keys: Keys,
) -> ManualAssignment:
    """Ask routing to offer the referral to the named case manager (may exceed capacity; the decision is
    recorded and audited by routing). The reason may describe the youth: it is sealed with the referral's
    data key here, and routing (and the bus) see only the note's id. Routing's refusals come back with
    the same status and text."""
    rid = _uuid(referral_id, "referral")
    try:
        cid = uuid.UUID(data.case_manager_id)
    except ValueError:
        raise Problem(
            422,
            "No such case manager.",
            errors=[{"field": "case_manager_id", "message": "not a case manager id"}],
        ) from None
    note_id = await notes.seal_as_system(
        pool, keys, caller, str(rid), "manual_assignment_reason", data.reason.strip()
    )
    command = AssignCommand(
        referral_id=str(rid),
        case_manager_id=str(cid),
        # No such referral, or its details already destroyed: routing refuses; nothing is kept.
        reason=notes.NOTE_REF + note_id if note_id else "(not kept)",
        actor_id=caller.id,
        actor_role=caller.role,
        actor_region=caller.region,
        request_id=request_id,
    )
    try:
        if nc is None:
            raise CommandUnavailable("not connected")
        reply = await request_assignment(nc, command)
    except CommandUnavailable:
        if note_id:
            await notes.drop_as_system(pool, note_id)
        raise unavailable("routing") from None
    if reply.status == 201 and reply.assignment is not None:
        return reply.assignment
    if note_id:
        await notes.drop_as_system(pool, note_id)  # refused: the words are not kept
    if 400 <= reply.status < 500:  # 404, 409, 422; 403 when routing finds the actor may not (any more)
        errors = [{"field": reply.field, "message": reply.message}] if reply.field else None
        raise Problem(reply.status, reply.message, errors=errors)
    raise unavailable("routing")


# --------------------------------------------------------------------------- explanations


async def explain(
    conn: asyncpg.Connection,
    caller: Caller,
    catalogue: Catalogue,
    referral_id: str,
    *,
    pool: asyncpg.Pool,
    keys: Keys,
) -> RoutingExplanation:
    """Why the referral went where it went, in plain words (each view audited)."""
    rid = _uuid(referral_id, "referral")
    ref = await conn.fetchrow(_EXPLAINED_REFERRAL, rid)
    # An out-of-area referral (no region) is every supervisor's (as row-level security says too).
    if ref is None or (caller.role == "supervisor" and ref["region"] not in (None, caller.region)):
        raise Problem(404, "No such referral.")
    decisions = await conn.fetch(_ROUTING_DECISIONS, rid)
    offers = await conn.fetch(_REFERRAL_OFFERS, rid)
    names = await _names(conn, decisions, offers)
    await audit.record(conn, caller.identity, "routing.explanation_viewed", "referral", str(rid))
    region_name = next((r.name for r in catalogue.regions if r.code == ref["region"]), ref["region"])
    reasons = [await _reason(pool, keys, d["reason"]) if d["kind"] == "manual" else "" for d in decisions]
    views = [
        _decision_view(d, names, region_name or "the region", ref["language"], reason)
        for d, reason in zip(decisions, reasons, strict=True)
    ]
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
    rows = await conn.fetch(_STAFF_NAMES, valid)
    return {str(r["id"]): r["display_name"] for r in rows if r["display_name"]}


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _person(staff_id: str, names: dict[str, str]) -> Person:
    return Person(staff_id, display_name(staff_id, names))


async def _reason(pool: asyncpg.Pool, keys: Keys, stored: str | None) -> str:
    """A manual assignment's reason in words: opened from its sealed note (the route has authorised the
    reader), or said to be destroyed with the youth's details."""
    if not stored or not stored.startswith(notes.NOTE_REF):
        return stored or ""  # written before reasons were sealed
    words = await notes.open_as_system(pool, keys, stored.removeprefix(notes.NOTE_REF))
    return words if words is not None else "(destroyed with the youth's details)"


def _decision_view(
    d: asyncpg.Record, names: dict[str, str], region: str, language: str, reason: str = ""
) -> DecisionView:
    chosen = _person(str(d["chosen_id"]), names) if d["chosen_id"] else None
    candidates: list[CandidateView] = []
    explained: Explained
    decided_by = None
    try:
        if d["kind"] == "manual":
            manual = msgspec.convert(d["detail"], ManualRecord)
            decided_by = _person(str(d["actor_id"]), names) if d["actor_id"] else None
            actor = decided_by.name if decided_by else "a supervisor"
            explained = explain_manual(manual, reason, actor, names, language)
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
