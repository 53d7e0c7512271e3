"""Account pages (issue 14): administrators create, deactivate, reactivate and reset staff and partner
accounts and partners; everyone with a password changes it (at once after a one-time one).

Each page acts through the same services as the admin API (accounts, partners, sign-in), so the rules,
row-level security and the audit log are the API's. One-time passwords and new API keys appear once,
in the response to the post that made them, never in a URL.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, Response, get, post
from litestar.di import Provide
from litestar.response import Redirect, Template

from services.intake.core.auth import Caller, require_staff
from services.intake.core.dependencies import CallerDb, provide_caller
from services.intake.core.problems import Problem
from services.intake.partners import service as partners
from services.intake.staff import service as staff
from services.intake.staff.accounts import ROLES
from services.intake.staff.schemas import StaffIn
from services.intake.web import forms
from services.intake.web.render import (
    HOME,
    checked_form,
    context,
    page,
    plain,
    redirect,
    uuid_or_404,
)
from services.intake.web.service import display_name_alone
from services.intake.web.session import session_cookies

__all__ = ["ROUTES"]

_ADMIN = [require_staff("admin")]
# The password page is for every signed-in person with a password: staff and partner users alike.
_ANYONE = {"caller": Provide(provide_caller)}


def _refusal(exc: Problem) -> str:
    errors = exc.errors or []
    return "; ".join(f"{e['field']}: {e['message']}" for e in errors) or exc.detail


async def _staff_page(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, *, status: int = 200, **extra: Any
) -> Template:
    partner_list = plain(await partners.partner_listing(db))
    ctx = context(
        request,
        caller,
        await display_name_alone(db, caller.id),
        accounts=plain(await staff.account_listing(db)),
        partners=[p for p in partner_list if p["kind"] != "coordinating_agency"],
        partner_names={p["id"]: p["name"] for p in partner_list},
        roles=ROLES,
        **extra,
    )
    return page(request, "staff.html", ctx, status=status)


@get("/staff", include_in_schema=False, guards=_ADMIN)
async def staff_page(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Template:
    return await _staff_page(request, caller, db)


@post("/staff", include_in_schema=False, guards=_ADMIN, status_code=200)
async def staff_create(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Template:
    fields = await checked_form(request, caller)
    regions = [code for code in request.app.state.regions.codes if fields.get(f"region_{code}")]
    doc: dict[str, Any] = {
        "email": fields.get("email", "").strip(),
        "name": fields.get("name", "").strip(),
        "role": fields.get("role", ""),
        "regions": regions,
    }
    if fields.get("partner_id"):
        doc["partner_id"] = fields["partner_id"]
    try:
        made = await staff.create_account(db, request.app.state.regions.codes, forms.body(StaffIn, doc))
    except Problem as exc:
        if exc.status_code not in (409, 422):
            raise
        return await _staff_page(request, caller, db, status=exc.status_code, refused=_refusal(exc), form=doc)
    return await _staff_page(request, caller, db, created={"email": made.email, "password": made.password})


@post("/staff/{staff_id:str}/active", include_in_schema=False, guards=_ADMIN, status_code=303)
async def staff_active(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, staff_id: str
) -> Response[Any]:
    fields = await checked_form(request, caller)
    active = fields.get("active") == "1"
    try:
        await staff.set_account_active(db, uuid_or_404(staff_id), active)
    except Problem as exc:
        if exc.status_code != 409:
            raise
        return await _staff_page(request, caller, db, status=409, refused=_refusal(exc))
    return redirect("/app/staff", msg="staff.reactivated" if active else "staff.deactivated")


@post("/staff/{staff_id:str}/reset-password", include_in_schema=False, guards=_ADMIN, status_code=200)
async def staff_reset(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, staff_id: str
) -> Template:
    await checked_form(request, caller)
    email, password = await staff.reset_account_password(db, uuid_or_404(staff_id))
    return await _staff_page(request, caller, db, reset={"email": email, "password": password})


# ---- partners: create (with a first key, shown once), deactivate, reactivate ------------------------


async def _partners_page(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, *, status: int = 200, **extra: Any
) -> Template:
    name = await display_name_alone(db, caller.id)
    ctx = context(request, caller, name, partners=plain(await partners.partner_listing(db)), **extra)
    return page(request, "partners.html", ctx, status=status)


@post("/partners/new", include_in_schema=False, guards=_ADMIN, status_code=200)
async def partner_create(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Template:
    fields = await checked_form(request, caller)
    name = fields.get("name", "").strip()
    if not name or len(name) > 200 or "\x00" in name:
        return await _partners_page(request, caller, db, status=422, refused="name", form={"name": name})
    try:
        made = await partners.create_partner_in(db, name)
    except Problem as exc:
        if exc.status_code != 409:
            raise
        return await _partners_page(
            request, caller, db, status=409, refused=_refusal(exc), form={"name": name}
        )
    return await _partners_page(request, caller, db, created={"name": made.name, "api_key": made.api_key})


@post("/partners/{partner_id:str}/active", include_in_schema=False, guards=_ADMIN, status_code=303)
async def partner_active(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, partner_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    active = fields.get("active") == "1"
    await partners.set_partner_active(conn, caller.identity, uuid_or_404(partner_id), active)
    return redirect("/app/partners", msg="partners.reactivated" if active else "partners.deactivated")


# ---- your own password ------------------------------------------------------------------------------


def _has_password(caller: Caller) -> Caller:
    if caller.kind == "partner" and caller.id == caller.partner_id:
        raise Problem(403, "API keys have no password.")
    return caller


async def _password_page(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, *, status: int = 200, **extra: Any
) -> Template:
    name = await display_name_alone(db, caller.id)
    required = request.query_params.get("required") == "1"
    return page(
        request, "password.html", context(request, caller, name, required=required, **extra), status=status
    )


@get("/password", include_in_schema=False, dependencies=_ANYONE)
async def password_page(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Template:
    return await _password_page(request, _has_password(caller), db)


@post("/password", include_in_schema=False, dependencies=_ANYONE, status_code=303)
async def password_save(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Response[Any]:
    fields = await checked_form(request, _has_password(caller))
    settings = request.app.state.settings
    try:
        token = await staff.change_password(
            request.app.state.pool,
            caller,
            fields.get("current_password", ""),
            fields.get("new_password", ""),
            settings.secret_key,
            settings.token_ttl_seconds,
        )
    except Problem as exc:
        if exc.status_code != 422:
            raise
        return await _password_page(request, caller, db, status=422, refused=_refusal(exc))
    role = "partner" if caller.kind == "partner" else caller.role
    resp = redirect(HOME.get(role, "/app/"), msg="password.changed")
    # The change ended every earlier token, this session's too: it continues under the new one.
    resp.cookies.extend(session_cookies(request, token, settings.token_ttl_seconds, None))
    return resp


ROUTES: list[Any] = [
    staff_page,
    staff_create,
    staff_active,
    staff_reset,
    partner_create,
    partner_active,
    password_page,
    password_save,
]
