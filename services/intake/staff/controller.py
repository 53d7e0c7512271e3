"""Staff endpoints: sign-in for a token, and the case manager roster (supervisors: their region)."""

from __future__ import annotations

from typing import Any, Literal

import asyncpg
from litestar import Controller, Request, get, patch, post

from services.intake.core.auth import Caller, require_staff
from services.intake.core.dependencies import CallerDb
from services.intake.staff import roster, service
from services.intake.staff.schemas import (
    CaseManagerCreated,
    CaseManagerIn,
    CaseManagerPage,
    CaseManagerPatch,
    TokenRequest,
    TokenResponse,
)

__all__ = ["ROUTES", "RosterController", "token"]


@post(
    "/v1/auth/token", status_code=200, tags=["auth"], summary="Exchange staff credentials for a bearer token"
)
async def token(request: Request[Any, Any, Any], data: TokenRequest) -> TokenResponse:
    state = request.app.state
    settings = state.settings
    return await service.sign_in(
        state.pool, settings.secret_key, settings.token_ttl_seconds, data.email, data.password
    )


class RosterController(Controller):
    path = "/v1/admin"
    tags = ["routing"]
    guards = [require_staff("supervisor", "admin")]

    @get("/case-managers", summary="Case manager profiles (supervisor: their region)")
    async def list_case_managers(
        self,
        request: Request[Any, Any, Any],
        caller: Caller,
        conn: asyncpg.Connection,
        region: str | None = None,
        status: Literal["active", "away", "inactive"] | None = None,
    ) -> CaseManagerPage:
        codes = request.app.state.regions.codes
        return CaseManagerPage(await service.list_case_managers(conn, caller, codes, region, status))

    @post(
        "/case-managers",
        status_code=201,
        guards=[require_staff("admin")],
        summary="Create a case manager (staff account and routing profile)",
    )
    async def create_case_manager(
        self, request: Request[Any, Any, Any], db: CallerDb, data: CaseManagerIn
    ) -> CaseManagerCreated:
        return await service.create_case_manager(db, request.app.state.regions.codes, data)

    @get("/case-managers/{case_manager_id:str}", summary="One case manager's profile")
    async def get_case_manager(
        self, caller: Caller, conn: asyncpg.Connection, case_manager_id: str
    ) -> roster.ProfileView:
        return await service.get_case_manager(conn, caller, case_manager_id)

    @patch("/case-managers/{case_manager_id:str}", summary="Change a case manager's profile")
    async def update_case_manager(
        self,
        request: Request[Any, Any, Any],
        caller: Caller,
        conn: asyncpg.Connection,
        case_manager_id: str,
        data: CaseManagerPatch,
    ) -> roster.ProfileView:
        codes = request.app.state.regions.codes
        return await service.update_case_manager(conn, caller, codes, case_manager_id, data)


ROUTES: list[Any] = [token, RosterController]
