"""Offers, case work, consent withdrawal and the youth's details: the endpoints, guarded per role."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from litestar import Controller, Request, get, post
from litestar.params import Parameter

from services.intake.cases import assignments, consent, pii, renewal, service
from services.intake.cases.schemas import (
    AssignmentPage,
    AssignmentView,
    BreakGlassIn,
    CloseIn,
    ContactIn,
    ContactPreferenceIn,
    DeclineIn,
    HistoryPage,
    InterventionIn,
    InterventionPage,
    InterventionView,
    OutcomeIn,
    OutcomePage,
    PiiView,
    WithdrawIn,
)
from services.intake.core.auth import Caller, require_role, require_staff
from services.intake.referrals.schemas import Consent, ReferralView

__all__ = [
    "ROUTES",
    "AssignmentController",
    "CaseController",
    "ConsentController",
    "ConsentRenewalController",
]

_PARTNER_OR_CM = ("partner", "case_manager")


class AssignmentController(Controller):
    path = "/v1/assignments"
    tags = ["assignments"]
    guards = [require_staff("case_manager")]

    @get("/", summary="My assignments (offers and accepted cases)")
    async def list_(
        self,
        caller: Caller,
        conn: asyncpg.Connection,
        state_filter: Annotated[str | None, Parameter(query="state", required=False)] = None,
    ) -> AssignmentPage:
        return await assignments.my_assignments(conn, caller, state_filter)

    @post("/{assignment_id:str}/accept", status_code=200, summary="Accept an offer")
    async def accept(self, caller: Caller, conn: asyncpg.Connection, assignment_id: str) -> ReferralView:
        return await assignments.accept(conn, caller, assignment_id)

    @post("/{assignment_id:str}/decline", status_code=200, summary="Decline an offer, with a reason")
    async def decline(
        self,
        request: Request[Any, Any, Any],
        caller: Caller,
        conn: asyncpg.Connection,
        assignment_id: str,
        data: DeclineIn,
    ) -> AssignmentView:
        keys = request.app.state.pii_keys
        return await assignments.decline(conn, caller, assignment_id, data.reason, keys)


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
        self, caller: Caller, conn: asyncpg.Connection, referral_id: str, data: ContactIn | None = None
    ) -> ReferralView:
        return await service.contact(conn, caller, referral_id, data or ContactIn())

    @post(
        "/{referral_id:str}/close",
        guards=[require_staff("case_manager")],
        status_code=200,
        summary="Close the case with a reason code; frees the case manager's capacity",
    )
    async def close(
        self, caller: Caller, conn: asyncpg.Connection, referral_id: str, data: CloseIn
    ) -> ReferralView:
        return await service.close(conn, caller, referral_id, data)

    @post(
        "/{referral_id:str}/contact-preference",
        guards=[
            require_role(
                *_PARTNER_OR_CM,
                detail="Only the referring partner or the case manager records the youth's preference.",
            )
        ],
        status_code=200,
        summary="Record the youth's do-not-contact preference (the referring partner or the case manager)",
    )
    async def contact_preference(
        self, caller: Caller, conn: asyncpg.Connection, referral_id: str, data: ContactPreferenceIn
    ) -> ReferralView:
        return await service.set_contact_preference(conn, caller, referral_id, data.do_not_contact)

    @post(
        "/{referral_id:str}/interventions",
        guards=[require_staff("case_manager")],
        status_code=201,
        summary="Record a service delivered to the youth (coded; no free text)",
    )
    async def add_intervention(
        self, caller: Caller, conn: asyncpg.Connection, referral_id: str, data: InterventionIn
    ) -> InterventionView:
        return await service.add_intervention(conn, caller, referral_id, data)

    @get(
        "/{referral_id:str}/interventions",
        guards=[require_staff("case_manager", "supervisor")],
        summary="Services recorded for the youth (their case manager; supervisors of the region)",
    )
    async def interventions(self, conn: asyncpg.Connection, referral_id: str) -> InterventionPage:
        return await service.interventions(conn, referral_id)

    @post(
        "/{referral_id:str}/outcomes",
        guards=[require_staff("case_manager")],
        status_code=201,
        summary="Record follow-up outcomes (one or more measures observed on one day from one source)",
    )
    async def add_outcomes(
        self, caller: Caller, conn: asyncpg.Connection, referral_id: str, data: OutcomeIn
    ) -> OutcomePage:
        return await service.add_outcomes(conn, caller, referral_id, data)

    @get(
        "/{referral_id:str}/outcomes",
        guards=[require_staff("case_manager", "supervisor")],
        summary="The follow-up schedule and the outcomes recorded (their case manager; region supervisors)",
    )
    async def outcomes(self, conn: asyncpg.Connection, referral_id: str) -> OutcomePage:
        return await service.outcomes(conn, referral_id)

    @get(
        "/{referral_id:str}/history",
        guards=[require_staff("case_manager", "supervisor", "admin")],
        summary="Every status change of the referral: when, from, to, by which role, why (reason code)",
    )
    async def history(self, conn: asyncpg.Connection, referral_id: str) -> HistoryPage:
        return await service.history(conn, referral_id)


class ConsentController(Controller):
    """Consent and the youth's identifying details (each read audited)."""

    path = "/v1"

    @post(
        "/referrals/{referral_id:str}/consent/withdraw",
        guards=[
            require_role(
                *_PARTNER_OR_CM,
                detail="Only the referring partner or the case manager can record a withdrawal.",
            )
        ],
        status_code=200,
        tags=["referrals"],
        summary="Record that the youth withdrew consent: PII is destroyed, the referral stops if not engaged",
    )
    async def withdraw_consent(
        self, caller: Caller, conn: asyncpg.Connection, referral_id: str, data: WithdrawIn | None = None
    ) -> ReferralView:
        # The note (free text that may describe the youth) is not stored: only that a withdrawal happened.
        return await consent.withdraw(conn, caller, referral_id)

    @get(
        "/referrals/{referral_id:str}/details",
        guards=[require_staff("case_manager")],
        tags=["referrals"],
        summary="The youth's identifying details, for the case manager who has the referral (audited)",
    )
    async def read_details(
        self, request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, referral_id: str
    ) -> PiiView:
        return await pii.read_details(conn, caller, request.app.state.pii_keys, referral_id)

    @post(
        "/admin/referrals/{referral_id:str}/break-glass",
        guards=[require_staff("admin")],
        status_code=200,
        tags=["admin"],
        summary="Emergency access to a youth's details by an admin, with a stated reason (audited)",
    )
    async def break_glass(
        self,
        request: Request[Any, Any, Any],
        caller: Caller,
        conn: asyncpg.Connection,
        referral_id: str,
        data: BreakGlassIn,
    ) -> PiiView:
        return await pii.break_glass(conn, caller, request.app.state.pii_keys, referral_id, data.reason)


class ConsentRenewalController(Controller):
    """Consent over two years (issue 17): its state with the days left, and renewals by the case manager."""

    path = "/v1/referrals"
    tags = ["cases"]
    guards = [require_staff("case_manager")]

    @get("/{referral_id:str}/consent", summary="The consent in force and the days it has left")
    async def read(self, caller: Caller, conn: asyncpg.Connection, referral_id: str) -> renewal.ConsentView:
        return await renewal.read_consent(conn, caller, referral_id)

    @post(
        "/{referral_id:str}/consent",
        status_code=201,
        summary="Renew the youth's consent (the case goes on; only an unrenewed expiry shreds)",
    )
    async def renew(
        self, caller: Caller, conn: asyncpg.Connection, referral_id: str, data: Consent
    ) -> renewal.ConsentView:
        return await renewal.renew(conn, caller, referral_id, data)


ROUTES: list[Any] = [AssignmentController, CaseController, ConsentController, ConsentRenewalController]
