"""A supervisor's or admin's manual assignment: may exceed capacity, needs a reason, is audited."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from services.routing.rules import Rules
from shared import audit
from shared.commands import ManualAssignment
from shared.db import Identity, load_sql
from shared.decisions import ManualRecord
from shared.events import AssignmentCancelled, Event, ReferralAssigned, ReferralStatusChanged
from shared.outbox import enqueue

__all__ = ["ASSIGNABLE", "ManualAssignError", "ManualAssignment", "assign_manually"]

_SQL = __package__
# A waiting referral, or one whose offer is still open (the offer is withdrawn), can be assigned by hand.
ASSIGNABLE = ("received", "unroutable", "assigned")


class ManualAssignError(Exception):
    """Refused; ``status`` is the HTTP status to answer with and the message is safe to show."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


async def assign_manually(
    conn: asyncpg.Connection,
    identity: Identity,
    referral_id: uuid.UUID,
    case_manager_id: uuid.UUID,
    reason: str,
    rules: Rules,
    trace_id: str = "",
) -> ManualAssignment:
    """Offer the referral to the named case manager in the caller's transaction (RLS applies to them).

    Supervisors act within their own region: another region's referral is "not found", and a case
    manager they cannot see cannot be chosen. An out-of-area referral (no region) is every
    supervisor's: no region owns it, and every supervisor is told of it. ``identity`` must be the database's word for the actor
    (see services/routing/commands.py), never a claim.
    """
    ref = await conn.fetchrow(load_sql(_SQL, "lock_referral"), referral_id)
    if ref is None or (identity.role == "supervisor" and ref["region"] not in (None, identity.region)):
        raise ManualAssignError(404, "No such referral.")
    if ref["status"] not in ASSIGNABLE:
        raise ManualAssignError(
            409,
            f"The referral is {ref['status']}; only a waiting or offered referral can be assigned by hand.",
        )
    cm = await conn.fetchrow(load_sql(_SQL, "case_manager_profile"), case_manager_id)
    if cm is None:
        raise ManualAssignError(422, "No such case manager.", "case_manager_id")
    if cm["status"] != "active":
        back = f" until {cm['away_until'].isoformat()}" if cm["away_until"] else ""
        raise ManualAssignError(409, f"That case manager is {cm['status']}{back}; make them active first.")
    live = await conn.fetchrow(load_sql(_SQL, "lock_live_offer"), referral_id)
    events: list[Event] = []
    if live is not None:
        if live["case_manager_id"] == case_manager_id:
            raise ManualAssignError(409, "The referral is already offered to that case manager.")
        await conn.execute(load_sql(_SQL, "cancel_offer"), live["id"])
        await conn.execute(load_sql(_SQL, "release_capacity"), live["case_manager_id"])
        events.append(
            AssignmentCancelled(
                referral_id=str(referral_id),
                assignment_id=str(live["id"]),
                case_manager_id=str(live["case_manager_id"]),
                reason="reassigned_by_hand",
                trace_id=trace_id,
            )
        )
    load = await conn.fetchrow(load_sql(_SQL, "take_capacity_by_hand"), case_manager_id)
    if load is None:  # row-level security let them see the row but not change it
        raise ManualAssignError(404, "No such case manager.")
    now = datetime.now(UTC)
    respond_by = now + timedelta(seconds=rules.offers.ttl_for(ref["urgency"]))
    attempt = await conn.fetchval(load_sql(_SQL, "next_attempt"), referral_id)
    assignment_id = uuid.uuid4()
    await conn.execute(
        load_sql(_SQL, "insert_offer"), assignment_id, referral_id, case_manager_id, now, respond_by, attempt
    )
    await conn.execute(load_sql(_SQL, "transition_reason"), "manual_assignment")
    await conn.execute(load_sql(_SQL, "mark_assigned"), referral_id, now)
    record = ManualRecord(
        policy_version=rules.version,
        case_manager_id=str(case_manager_id),
        previous_status=ref["status"],
        over_capacity=load["active_count"] > load["capacity"],
        active_count=load["active_count"],
        capacity=load["capacity"],
        speaks_language=ref["language"] in cm["languages"],
        serves_region=ref["region"] is not None and ref["region"] in cm["regions"],
        cancelled_assignment=str(live["id"]) if live is not None else None,
    )
    decision_id = uuid.uuid4()
    await conn.execute(
        load_sql(_SQL, "insert_manual_decision"),
        decision_id,
        referral_id,
        now,
        case_manager_id,
        msgspec.to_builtins(record),
        rules.version,
        identity.actor_id,
        reason,
    )
    # The reason is staff-written and may describe the youth: it stays in routing_decisions.
    await audit.record(
        conn,
        identity,
        "routing.manual_assign",
        "referral",
        str(referral_id),
        {
            "case_manager_id": str(case_manager_id),
            "decision_id": str(decision_id),
            "over_capacity": record.over_capacity,
            "previous_status": ref["status"],
        },
    )
    events.append(
        ReferralAssigned(
            referral_id=str(referral_id),
            assignment_id=str(assignment_id),
            case_manager_id=str(case_manager_id),
            region=ref["region"] or "",
            respond_by=respond_by,
            urgency=ref["urgency"],
            trace_id=trace_id,
        )
    )
    if ref["status"] != "assigned":
        events.append(
            ReferralStatusChanged(
                referral_id=str(referral_id),
                partner_id=str(ref["partner_id"]),
                status="assigned",
                previous_status=ref["status"],
                trace_id=trace_id,
            )
        )
    await enqueue(conn, *events)
    warnings = []
    if record.over_capacity:
        warnings.append(f"over capacity: {record.active_count} of {record.capacity} cases")
    if not record.speaks_language:
        warnings.append(f"does not list the youth's language ({ref['language']})")
    if not record.serves_region and ref["region"] is not None:  # out of area: nobody serves it
        warnings.append("does not serve the referral's region")
    return ManualAssignment(
        assignment_id=str(assignment_id),
        referral_id=str(referral_id),
        case_manager_id=str(case_manager_id),
        respond_by=respond_by,
        over_capacity=record.over_capacity,
        active_count=record.active_count,
        capacity=record.capacity,
        warnings=warnings,
        decision_id=str(decision_id),
    )
