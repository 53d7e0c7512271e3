"""Case managers see their offers and accept or decline them; each answer is outboxed for routing."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, NoReturn

import asyncpg
from litestar import Controller, Request, get, post
from litestar.params import Parameter

from services.intake.auth import Caller, require_staff, resolve_caller
from services.intake.problems import Problem
from services.intake.referrals import referral_view
from services.intake.schemas import AssignmentPage, AssignmentView, DeclineIn, ReferralView
from shared.codes import ASSIGNMENT_STATES
from shared.db import load_sql, transaction
from shared.events import AssignmentAccepted, AssignmentDeclined, ReferralStatusChanged
from shared.outbox import enqueue

__all__ = ["AssignmentController"]

_SQL = "services.intake"


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise Problem(404, "No such assignment.") from None


class AssignmentController(Controller):
    path = "/v1/assignments"
    tags = ["assignments"]
    guards = [require_staff("case_manager")]

    @get("/", summary="My assignments (offers and accepted cases)")
    async def list_(
        self,
        request: Request[Any, Any, Any],
        state_filter: Annotated[str | None, Parameter(query="state", required=False)] = None,
    ) -> AssignmentPage:
        caller = await resolve_caller(request)
        if state_filter is not None and state_filter not in ASSIGNMENT_STATES:
            raise Problem(
                422,
                f"Unknown state {state_filter!r}.",
                errors=[{"field": "state", "message": f"must be one of {', '.join(ASSIGNMENT_STATES)}"}],
            )
        async with transaction(request.app.state.pool, caller.identity) as conn:
            rows = await conn.fetch(
                "SELECT a.id, a.referral_id, a.state, a.offered_at, a.respond_by, a.responded_at,"
                " r.region, r.needs, r.urgency FROM assignments a JOIN referrals r ON r.id = a.referral_id"
                " WHERE a.case_manager_id = $1 AND ($2::text IS NULL OR a.state = $2)"
                " ORDER BY a.offered_at DESC LIMIT 200",
                caller.id,
                state_filter,
            )
        return AssignmentPage(
            items=[
                AssignmentView(
                    id=str(r["id"]),
                    referral_id=str(r["referral_id"]),
                    state=r["state"],
                    offered_at=r["offered_at"],
                    respond_by=r["respond_by"],
                    responded_at=r["responded_at"],
                    region=r["region"],
                    needs=list(r["needs"]),
                    urgency=r["urgency"],
                )
                for r in rows
            ]
        )

    @post("/{assignment_id:str}/accept", status_code=200, summary="Accept an offer")
    async def accept(self, request: Request[Any, Any, Any], assignment_id: str) -> ReferralView:
        caller = await resolve_caller(request)
        aid = _uuid(assignment_id)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            row = await conn.fetchrow(load_sql(_SQL, "answer_offer"), aid, caller.id, "accepted", None)
            if row is None:
                await _explain_missing(conn, aid, caller)
            ref = await conn.fetchrow(
                "UPDATE referrals SET status = 'accepted', accepted_at = now(), updated_at = now()"
                " WHERE id = $1 AND status = 'assigned' RETURNING *",
                row["referral_id"],
            )
            if ref is None:
                raise Problem(409, "The referral is no longer waiting for an answer.")
            await enqueue(
                conn,
                AssignmentAccepted(
                    referral_id=str(ref["id"]), assignment_id=str(aid), case_manager_id=caller.id
                ),
                ReferralStatusChanged(
                    referral_id=str(ref["id"]),
                    partner_id=str(ref["partner_id"]),
                    status="accepted",
                    previous_status="assigned",
                ),
            )
        return referral_view(ref)

    @post("/{assignment_id:str}/decline", status_code=200, summary="Decline an offer, with a reason")
    async def decline(
        self, request: Request[Any, Any, Any], assignment_id: str, data: DeclineIn
    ) -> AssignmentView:
        caller = await resolve_caller(request)
        aid = _uuid(assignment_id)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            row = await conn.fetchrow(load_sql(_SQL, "answer_offer"), aid, caller.id, "declined", data.reason)
            if row is None:
                await _explain_missing(conn, aid, caller)
            # The declined offer no longer counts against this case manager's capacity.
            await conn.execute(
                "UPDATE case_managers SET active_count = active_count - 1 WHERE staff_id = $1 AND active_count > 0",
                caller.id,
            )
            await enqueue(
                conn,
                AssignmentDeclined(
                    referral_id=str(row["referral_id"]), assignment_id=str(aid), case_manager_id=caller.id
                ),
            )
            a = await conn.fetchrow(
                "SELECT id, referral_id, state, offered_at, respond_by, responded_at FROM assignments WHERE id = $1",
                aid,
            )
        assert a is not None  # updated in this very transaction
        return AssignmentView(
            id=str(a["id"]),
            referral_id=str(a["referral_id"]),
            state=a["state"],
            offered_at=a["offered_at"],
            respond_by=a["respond_by"],
            responded_at=a["responded_at"],
        )


async def _explain_missing(conn: asyncpg.Connection, aid: uuid.UUID, caller: Caller) -> NoReturn:
    state = await conn.fetchval(
        "SELECT state FROM assignments WHERE id = $1 AND case_manager_id = $2", aid, caller.id
    )
    if state is None:
        raise Problem(404, "No such assignment.")
    raise Problem(
        409,
        f"This offer was already answered or withdrawn (state: {state}).",
        extra_fields={"state": state},
        slug="offer-closed",
    )
