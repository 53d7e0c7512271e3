"""Referral endpoints: partners submit; partners, case managers, supervisors and admins read."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from services.intake.core.auth import Caller, any_caller, require_role, require_staff
from services.intake.core.dependencies import CallerDb
from services.intake.core.middleware import request_id
from services.intake.core.problems import Problem
from services.intake.referrals import matches, service
from services.intake.referrals.agency import agency_caller
from services.intake.referrals.schemas import ReferralIn, ReferralPage, ReferralView
from shared.youthkey import youth_key_secret

__all__ = ["ReferralController", "YouthMatchController"]


class ReferralController(Controller):
    path = "/v1/referrals"
    tags = ["referrals"]

    @post(
        "/",
        guards=[require_role("partner", "intake_staff", detail="Partners submit referrals.")],
        status_code=201,
        summary="Submit a referral",
        description="Partners submit a referral. `Idempotency-Key` makes retries safe. The coordinating"
        " agency's intake staff submit its own (hotline, walk-in, self-referral) the same way.",
    )
    async def create(
        self,
        request: Request[Any, Any, Any],
        caller: Caller,
        db: CallerDb,
        data: ReferralIn,
        idempotency_key: Annotated[str | None, Parameter(header="Idempotency-Key", required=False)] = None,
    ) -> Response[ReferralView]:
        if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
            raise Problem(
                422,
                "Idempotency-Key must be 1-255 characters.",
                errors=[{"field": "Idempotency-Key", "message": "length must be 1-255"}],
            )
        state = request.app.state
        if caller.role == "intake_staff":
            # The agency's own intake acts as the agency's partner row (services/intake/referrals/agency.py).
            caller = await agency_caller(state.pool, caller)
            db = CallerDb(state.pool, caller.identity)
        done = await service.submit(
            db,
            caller,
            data,
            idempotency_key=idempotency_key,
            regions=state.regions,
            keyring=state.pii_keys.ring,
            youth_secret=youth_key_secret(state.settings.youth_key_secret, state.settings.secret_key),
            trace_id=request_id(request.scope),
        )
        headers = {"Location": f"/v1/referrals/{done.view.id}"}
        if done.replayed:
            headers["Idempotent-Replayed"] = "true"
        return Response(
            content=done.view, status_code=done.status_code, media_type="application/json", headers=headers
        )

    @get("/{referral_id:str}", guards=[any_caller()], summary="A referral's status view")
    async def read(self, caller: Caller, conn: asyncpg.Connection, referral_id: str) -> ReferralView:
        return await service.read_referral(conn, caller, referral_id)

    @get("/", guards=[any_caller()], summary="Referrals visible to the caller, newest first")
    async def list_(
        self,
        caller: Caller,
        conn: asyncpg.Connection,
        status: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
        cursor: str | None = None,
    ) -> ReferralPage:
        return await service.list_referrals(conn, caller, status, limit, cursor)


class YouthMatchController(Controller):
    """One youth across partners (issue 17): staff see a referral's probable matches, link or dismiss them."""

    path = "/v1/referrals"
    tags = ["referrals"]
    guards = [require_staff("case_manager", "supervisor", "admin")]

    @get("/{referral_id:str}/matches", summary="Referrals probably of the same youth (staff only)")
    async def list_(
        self, caller: Caller, conn: asyncpg.Connection, referral_id: str
    ) -> list[matches.MatchView]:
        return await matches.list_matches(conn, caller, referral_id)

    @post("/{referral_id:str}/matches/{match_id:str}/link", status_code=200, summary="The same youth: link")
    async def link(
        self, caller: Caller, conn: asyncpg.Connection, referral_id: str, match_id: str
    ) -> matches.MatchView:
        return await matches.decide(conn, caller, referral_id, match_id, "linked")

    @post("/{referral_id:str}/matches/{match_id:str}/dismiss", status_code=200, summary="Not the same youth")
    async def dismiss(
        self, caller: Caller, conn: asyncpg.Connection, referral_id: str, match_id: str
    ) -> matches.MatchView:
        return await matches.decide(conn, caller, referral_id, match_id, "dismissed")
