"""A supervisor's or admin's manual assignment: may exceed capacity, needs a reason, is audited."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import msgspec

from services.routing.rules import Rules
from shared import audit
from shared.db import Identity
from shared.decisions import ManualRecord
from shared.events import AssignmentCancelled, Event, ReferralAssigned, ReferralStatusChanged
from shared.outbox import enqueue

__all__ = ["ASSIGNABLE", "ManualAssignError", "ManualAssignment", "assign_manually"]

# A waiting referral, or one whose offer is still open (the offer is withdrawn), can be assigned by hand.
ASSIGNABLE = ("received", "unroutable", "assigned")


class ManualAssignError(Exception):
    """Refused; ``status`` is the HTTP status to answer with and the message is safe to show."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


class ManualAssignment(msgspec.Struct, kw_only=True):
    assignment_id: str
    referral_id: str
    case_manager_id: str
    respond_by: datetime
    over_capacity: bool
    active_count: int
    capacity: int
    warnings: list[str]
    decision_id: str


async def assign_manually(
    conn: asyncpg.Connection,
    identity: Identity,
    referral_id: uuid.UUID,
    case_manager_id: uuid.UUID,
    reason: str,
    rules: Rules,
) -> ManualAssignment:
    """Offer the referral to the named case manager in the caller's transaction (RLS applies to them).

    Supervisors act within their own region: another region's referral is "not found", and a case
    manager they cannot see cannot be chosen.
    """
    ref = await conn.fetchrow("SELECT * FROM referrals WHERE id = $1 FOR UPDATE", referral_id)
    if ref is None or (identity.role == "supervisor" and ref["region"] != identity.region):
        raise ManualAssignError(404, "No such referral.")
    if ref["status"] not in ASSIGNABLE:
        raise ManualAssignError(
            409,
            f"The referral is {ref['status']}; only a waiting or offered referral can be assigned by hand.",
        )
    cm = await conn.fetchrow(
        "SELECT staff_id, regions, languages, capacity, status, away_until FROM case_managers WHERE staff_id = $1",
        case_manager_id,
    )
    if cm is None:
        raise ManualAssignError(422, "No such case manager.", "case_manager_id")
    if cm["status"] != "active":
        back = f" until {cm['away_until'].isoformat()}" if cm["away_until"] else ""
        raise ManualAssignError(409, f"That case manager is {cm['status']}{back}; make them active first.")
    live = await conn.fetchrow(
        "SELECT id, case_manager_id FROM assignments WHERE referral_id = $1 AND state = 'offered' FOR UPDATE",
        referral_id,
    )
    events: list[Event] = []
    if live is not None:
        if live["case_manager_id"] == case_manager_id:
            raise ManualAssignError(409, "The referral is already offered to that case manager.")
        await conn.execute(
            "UPDATE assignments SET state = 'cancelled', responded_at = now() WHERE id = $1", live["id"]
        )
        await conn.execute(
            "UPDATE case_managers SET active_count = active_count - 1 WHERE staff_id = $1 AND active_count > 0",
            live["case_manager_id"],
        )
        events.append(
            AssignmentCancelled(
                referral_id=str(referral_id),
                assignment_id=str(live["id"]),
                case_manager_id=str(live["case_manager_id"]),
                reason="reassigned_by_hand",
            )
        )
    # No capacity condition: a supervisor may knowingly go over it.
    load = await conn.fetchrow(
        "UPDATE case_managers SET active_count = active_count + 1 WHERE staff_id = $1"
        " RETURNING active_count, capacity",
        case_manager_id,
    )
    if load is None:  # row-level security let them see the row but not change it
        raise ManualAssignError(404, "No such case manager.")
    now = datetime.now(UTC)
    respond_by = now + timedelta(seconds=rules.offers.ttl_for(ref["urgency"]))
    attempt = await conn.fetchval("SELECT count(*) + 1 FROM assignments WHERE referral_id = $1", referral_id)
    assignment_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO assignments (id, referral_id, case_manager_id, state, offered_at, respond_by, attempt)"
        " VALUES ($1, $2, $3, 'offered', $4, $5, $6)",
        assignment_id,
        referral_id,
        case_manager_id,
        now,
        respond_by,
        attempt,
    )
    # Names the status change in the referral's transition history (shared/lifecycle.py).
    await conn.execute("SELECT set_config('app.transition_reason', 'manual_assignment', true)")
    await conn.execute(
        "UPDATE referrals SET status = 'assigned', assigned_at = $2, updated_at = $2,"
        " unroutable_reason = NULL, queued_at = NULL WHERE id = $1",
        referral_id,
        now,
    )
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
        "INSERT INTO routing_decisions (id, referral_id, decided_at, outcome, chosen_id, detail, kind,"
        " policy_version, actor_id, reason) VALUES ($1, $2, $3, 'assigned', $4, $5, 'manual', $6, $7, $8)",
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
        )
    )
    if ref["status"] != "assigned":
        events.append(
            ReferralStatusChanged(
                referral_id=str(referral_id),
                partner_id=str(ref["partner_id"]),
                status="assigned",
                previous_status=ref["status"],
            )
        )
    await enqueue(conn, *events)
    warnings = []
    if record.over_capacity:
        warnings.append(f"over capacity: {record.active_count} of {record.capacity} cases")
    if not record.speaks_language:
        warnings.append(f"does not list the youth's language ({ref['language']})")
    if not record.serves_region:
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
