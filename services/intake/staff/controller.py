"""Staff endpoints: sign-in, password change, accounts (admins) and the case manager roster."""

from __future__ import annotations

import uuid
from typing import Any, Literal

import asyncpg
from litestar import Controller, Request, get, patch, post

from services.intake.core.auth import Caller, require_staff
from services.intake.core.dependencies import CallerDb
from services.intake.core.problems import Problem
from services.intake.staff import accounts, roster, service
from services.intake.staff.schemas import (
    CaseManagerCreated,
    CaseManagerIn,
    CaseManagerPage,
    CaseManagerPatch,
    PasswordChangeIn,
    PasswordOut,
    StaffCreated,
    StaffIn,
    StaffPage,
    StaffPatch,
    TokenRequest,
    TokenResponse,
)
from services.intake.staff.throttle import SignInThrottle

__all__ = [
    "ROUTES",
    "RosterController",
    "StaffAdminController",
    "client_address",
    "sign_in_throttle",
    "token",
]


@post(
    "/v1/auth/token", status_code=200, tags=["auth"], summary="Exchange staff credentials for a bearer token"
)
async def token(request: Request[Any, Any, Any], data: TokenRequest) -> TokenResponse:
    state = request.app.state
    settings = state.settings
    return await service.sign_in(
        state.pool,
        settings.secret_key,
        settings.token_ttl_seconds,
        data.email,
        data.password,
        client=client_address(request),
        throttle=sign_in_throttle(request),
    )


def client_address(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client is not None else ""


def sign_in_throttle(request: Request[Any, Any, Any]) -> SignInThrottle:
    """The app's one sign-in throttle (the API's and the web's sign-in share it)."""
    state = request.app.state
    throttle = state.get("sign_in_throttle")
    if not isinstance(throttle, SignInThrottle):
        throttle = state["sign_in_throttle"] = SignInThrottle()
    return throttle


@post(
    "/v1/auth/password",
    status_code=204,
    tags=["auth"],
    summary="Change your own password (required after a one-time password); other tokens stop working",
)
async def change_password(request: Request[Any, Any, Any], caller: Caller, data: PasswordChangeIn) -> None:
    if caller.id == caller.partner_id:
        raise Problem(403, "API keys have no password.")
    settings = request.app.state.settings
    await service.change_password(
        request.app.state.pool,
        caller,
        data.current_password,
        data.new_password,
        settings.secret_key,
        settings.token_ttl_seconds,
    )


def _staff_uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Problem(404, "No such account.") from None


class StaffAdminController(Controller):
    """Accounts of every role (admins): one-time passwords, deactivation that takes effect at once."""

    path = "/v1/admin/staff"
    tags = ["admin"]
    guards = [require_staff("admin")]

    @post("/", status_code=201, summary="Create an account of any role (its one-time password is shown once)")
    async def create(self, request: Request[Any, Any, Any], db: CallerDb, data: StaffIn) -> StaffCreated:
        return await service.create_account(db, request.app.state.regions.codes, data)

    @get("/", summary="Every account, newest first (never a password)")
    async def list_(self, conn: asyncpg.Connection) -> StaffPage:
        return StaffPage(await accounts.list_accounts(conn))

    @patch("/{staff_id:str}", summary="Deactivate (at once: tokens and sessions stop) or reactivate")
    async def update(self, db: CallerDb, staff_id: str, data: StaffPatch) -> accounts.Account:
        return await service.set_account_active(db, _staff_uuid(staff_id), data.active)

    @post(
        "/{staff_id:str}/reset-password",
        status_code=200,
        summary="A new one-time password (shown once); earlier tokens stop working",
    )
    async def reset(self, db: CallerDb, staff_id: str) -> PasswordOut:
        _, password = await service.reset_account_password(db, _staff_uuid(staff_id))
        return PasswordOut(password)


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


ROUTES: list[Any] = [token, change_password, RosterController, StaffAdminController]
