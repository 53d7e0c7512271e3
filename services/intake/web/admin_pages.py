"""Supervisors' and administrators' pages: the queue, the team, the dashboard, the roster, partners, the map."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar import Request, Response, get, post
from litestar.response import Redirect, Template

from services.intake.admin import routing
from services.intake.admin.dashboard import DEFAULT_WINDOW
from services.intake.admin.schemas import ManualAssignIn, Window
from services.intake.core.auth import Caller, require_staff
from services.intake.core.dependencies import CallerDb
from services.intake.core.middleware import request_id
from services.intake.core.problems import Problem
from services.intake.partners import service as partners
from services.intake.partners.schemas import KeyRotateIn
from services.intake.referrals.service import read_referral
from services.intake.staff import service as staff
from services.intake.staff.schemas import CaseManagerIn, CaseManagerPatch
from services.intake.web import case_extras, charts, forms, protocol_pages
from services.intake.web import service as web
from services.intake.web.dashboard import WINDOW_CHOICES, dashboard_charts
from services.intake.web.forms import refused_body
from services.intake.web.i18n import t
from services.intake.web.render import (
    checked_form,
    context,
    lang_of,
    page,
    page_context,
    plain,
    redirect,
    uuid_or_404,
)
from services.intake.web.service import REFUSED, attempt
from shared.codes import NEED_CODES

__all__ = ["ROUTES"]


async def _case_managers(
    request: Request[Any, Any, Any], conn: asyncpg.Connection, caller: Caller, region: str | None = None
) -> list[dict[str, Any]]:
    """Case manager profiles with their load (a supervisor: their region)."""
    codes = request.app.state.regions.codes
    items = plain(await staff.list_case_managers(conn, caller, codes, region))
    return sorted(items, key=lambda c: (c["regions"], c["name"]))


@get("/queue", include_in_schema=False, guards=[require_staff("supervisor", "admin")])
async def queue_page(request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection) -> Template:
    codes = request.app.state.regions.codes
    items = plain((await routing.queue(conn, caller, codes, None, None, 200)).items)
    return page(request, "queue.html", await page_context(request, caller, conn, items=items))


@get("/queue/{referral_id:str}", include_in_schema=False, guards=[require_staff("supervisor", "admin")])
async def queue_item(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, referral_id: str
) -> Template:
    rid = uuid_or_404(referral_id)
    try:
        referral = plain(await read_referral(conn, caller, rid))
    except Problem:
        raise Problem(404, "not found") from None
    explanation: Any = None
    try:
        state = request.app.state
        explanation = plain(
            await routing.explain(conn, caller, state.regions, rid, pool=state.pool, keys=state.pii_keys)
        )
    except Problem:
        explanation = None
    case_managers: list[dict[str, Any]] = []
    if referral["status"] == "unroutable":
        # Anyone active the caller may assign (an admin: every region; a supervisor: their own), the
        # referral's own region first; an out-of-area referral has none, so anyone may take it.
        region = referral.get("region")
        active = [c for c in await _case_managers(request, conn, caller) if c["status"] == "active"]
        case_managers = sorted(active, key=lambda c: (region not in c["regions"], c["name"]))
    ctx = await page_context(
        request,
        caller,
        conn,
        referral=referral,
        explanation=explanation,
        case_managers=case_managers,
        # Issue 17: referrals probably of the same youth (link or dismiss).
        matches=await case_extras.matches_panel(conn, caller, rid),
        match_referral=rid,
        # Issue 18: a child's protocol steps, completed here by the region's supervisors too.
        protocol=await protocol_pages.protocol_panel(conn, caller, request.app.state.pii_keys, rid),
    )
    return page(request, "queue_item.html", ctx)


@post(
    "/queue/{referral_id:str}/assign", include_in_schema=False, guards=[require_staff("supervisor", "admin")]
)
async def queue_assign(request: Request[Any, Any, Any], caller: Caller, referral_id: str) -> Redirect:
    fields = await checked_form(request, caller)
    rid = uuid_or_404(referral_id)
    doc = {"case_manager_id": fields.get("case_manager_id", ""), "reason": fields.get("reason", "").strip()}
    try:
        data = forms.body(ManualAssignIn, doc)
        # Routing makes the assignment (and audits it); see services/intake/admin/routing.py.
        state = request.app.state
        await routing.assign(
            state.bus.nc, caller, rid, data, request_id(request.scope), pool=state.pool, keys=state.pii_keys
        )
    except Problem as exc:
        if exc.status_code in REFUSED:
            return redirect(f"/app/queue/{rid}", msg="queue.assign_failed")
        raise
    return redirect("/app/queue", msg="queue.assigned")


@get("/team", include_in_schema=False, guards=[require_staff("supervisor", "admin")])
async def team_page(request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection) -> Template:
    case_managers = await _case_managers(request, conn, caller)
    return page(request, "team.html", await page_context(request, caller, conn, case_managers=case_managers))


# ---- administrators --------------------------------------------------------------------------------


def _window(request: Request[Any, Any, Any]) -> Window:
    """The time window in the page's URL (`?window=7d`); anything else is the default."""
    asked = request.query_params.get("window")
    return next((w for w in WINDOW_CHOICES if w == asked), DEFAULT_WINDOW)


async def _dashboard_context(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection
) -> dict[str, Any]:
    state = request.app.state
    figures = await state.dashboard.figures(caller.identity, window=_window(request))
    charts = dashboard_charts(lang_of(request), figures, state.regions.regions)
    return await page_context(request, caller, conn, f=figures, **charts)


@get("/dashboard", include_in_schema=False, guards=[require_staff("admin")])
async def dashboard(request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection) -> Template:
    ctx = await _dashboard_context(request, caller, conn)
    ctx["refresh"] = {"src": f"/app/dashboard/panels?window={ctx['window']}", "target": "panels", "every": 5}
    return page(request, "dashboard.html", ctx)


@get("/dashboard/panels", include_in_schema=False, guards=[require_staff("admin")])
async def dashboard_panels(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection
) -> Template:
    return page(request, "_panels.html", await _dashboard_context(request, caller, conn))


@get("/roster", include_in_schema=False, guards=[require_staff("admin")])
async def roster(request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection) -> Template:
    ctx = await page_context(request, caller, conn, staff=await web.staff_roster(conn))
    return page(request, "roster.html", ctx)


def _profile_form(**extra: Any) -> dict[str, Any]:
    return {"needs": NEED_CODES, "statuses": forms.CM_STATUSES, **extra}


@get("/roster/new", include_in_schema=False, guards=[require_staff("admin")])
async def roster_new(request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection) -> Template:
    ctx = await page_context(request, caller, conn, **_profile_form(profile=None, created=None))
    return page(request, "roster_edit.html", ctx)


@post("/roster/new", include_in_schema=False, guards=[require_staff("admin")], status_code=200)
async def roster_create(request: Request[Any, Any, Any], caller: Caller, db: CallerDb) -> Response[Any]:
    fields = await checked_form(request, caller)
    created: Any = None
    refused: Problem | None = None
    try:
        data = forms.body(CaseManagerIn, forms.profile_body(fields, with_identity=True))
        # A generated first password is shown once, in this response only.
        created = plain(await staff.create_case_manager(db, request.app.state.regions.codes, data))
    except Problem as exc:
        if exc.status_code not in REFUSED:
            raise
        refused = exc
    # The account was created (or refused) in a transaction of its own; the header's name is read apart.
    name = await web.display_name_alone(db, caller.id)
    if refused is None:
        ctx = context(request, caller, name, **_profile_form(profile=None, created=created))
        return page(request, "roster_edit.html", ctx)
    ctx = context(
        request,
        caller,
        name,
        **_profile_form(profile=None, created=None, error="roster.refused", problem=refused.detail),
    )
    return page(request, "roster_edit.html", ctx, status=refused.status_code)


@get("/roster/{case_manager_id:str}", include_in_schema=False, guards=[require_staff("admin", "supervisor")])
async def roster_edit(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, case_manager_id: str
) -> Template:
    try:
        profile = plain(await staff.get_case_manager(conn, caller, uuid_or_404(case_manager_id)))
    except Problem:
        raise Problem(404, "not found") from None
    ctx = await page_context(request, caller, conn, **_profile_form(profile=profile, created=None))
    return page(request, "roster_edit.html", ctx)


@post("/roster/{case_manager_id:str}", include_in_schema=False, guards=[require_staff("admin", "supervisor")])
async def roster_save(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, case_manager_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    cid = uuid_or_404(case_manager_id)
    back = "/app/roster" if caller.role == "admin" else "/app/team"
    codes = request.app.state.regions.codes
    data = refused_body(CaseManagerPatch, forms.profile_body(fields, with_identity=False))
    if data is None or await attempt(
        db, lambda conn: staff.update_case_manager(conn, caller, codes, cid, data)
    ):
        return redirect(f"/app/roster/{cid}", msg="roster.refused")
    return redirect(back, msg="roster.saved")


@get("/partners", include_in_schema=False, guards=[require_staff("admin")])
async def partners_page(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection
) -> Template:
    ctx = await page_context(request, caller, conn, partners=plain(await partners.list_partners(conn)))
    return page(request, "partners.html", ctx)


async def _keys_page(
    request: Request[Any, Any, Any],
    caller: Caller,
    conn: asyncpg.Connection,
    pid: str,
    new_key: dict[str, Any] | None = None,
) -> Template:
    partner = next((p for p in plain(await partners.list_partners(conn)) if p["id"] == pid), None)
    if partner is None:
        raise Problem(404, "not found")
    keys = plain(await partners.partner_keys(conn, pid))
    ctx = await page_context(request, caller, conn, partner=partner, keys=keys, new_key=new_key)
    return page(request, "partner_keys.html", ctx)


@get("/partners/{partner_id:str}", include_in_schema=False, guards=[require_staff("admin")])
async def partner_keys(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, partner_id: str
) -> Template:
    return await _keys_page(request, caller, conn, uuid_or_404(partner_id))


@post(
    "/partners/{partner_id:str}/keys",
    include_in_schema=False,
    guards=[require_staff("admin")],
    status_code=200,
)
async def create_key(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, partner_id: str
) -> Template:
    fields = await checked_form(request, caller)
    pid = uuid_or_404(partner_id)
    new_key = await partners.create_key(conn, caller, pid, fields.get("label", "")[:100])
    # Shown once, in this response only (never in a URL or a redirect).
    return await _keys_page(request, caller, conn, pid, new_key=plain(new_key))


@post("/keys/{key_id:str}/revoke", include_in_schema=False, guards=[require_staff("admin")], status_code=303)
async def revoke_key(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, key_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    pid = uuid_or_404(fields.get("partner_id", ""))
    await partners.revoke_key(conn, caller, uuid_or_404(key_id), fields.get("reason", "")[:500])
    return redirect(f"/app/partners/{pid}", msg="keys.revoked_ok")


@post("/keys/{key_id:str}/rotate", include_in_schema=False, guards=[require_staff("admin")], status_code=200)
async def rotate_key(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, key_id: str
) -> Template:
    fields = await checked_form(request, caller)
    pid = uuid_or_404(fields.get("partner_id", ""))
    new_key = await partners.rotate_key(conn, caller, uuid_or_404(key_id), KeyRotateIn().grace_seconds)
    return await _keys_page(request, caller, conn, pid, new_key=plain(new_key))


# ---- the map (aggregate counts only) ---------------------------------------------------------------


@get("/map", include_in_schema=False, guards=[require_staff("supervisor", "admin", "evaluator")])
async def map_page(request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection) -> Template:
    counts = await web.referrals_by_region(conn)
    lang = lang_of(request)
    catalogue = request.app.state.regions
    names = {r.code: r.name for r in catalogue.regions}
    # A supervisor sees their own region's referrals only: other regions are "not yours", not zero.
    hidden = t(lang, "map.other_region") if caller.role == "supervisor" else ""
    if caller.role == "supervisor":
        # Out-of-area referrals belong to no region: every supervisor sees them (see docs/api.md).
        counts = {caller.region: counts.get(caller.region, 0), "out_of_area": counts.get("out_of_area", 0)}
    svg = charts.region_map(
        "region-map",
        t(lang, "map.title"),
        catalogue.regions,
        counts,
        names,
        t(lang, "map.total", n="{n}"),
        hidden_label=hidden,
    )
    # A region with no referral yet is a zero, not a missing key.
    rows_out: list[tuple[str, Any]] = [
        (names[r.code], counts.get(r.code, 0) if r.code in counts or not hidden else hidden)
        for r in catalogue.regions
    ]
    if counts.get("out_of_area"):
        rows_out.append((t(lang, "map.out_of_area"), counts["out_of_area"]))
    ctx = await page_context(request, caller, conn, map_svg=svg, rows=rows_out)
    return page(request, "map.html", ctx)


ROUTES: list[Any] = [
    queue_page,
    queue_item,
    queue_assign,
    team_page,
    dashboard,
    dashboard_panels,
    roster,
    roster_new,
    roster_create,
    roster_edit,
    roster_save,
    partners_page,
    partner_keys,
    create_key,
    revoke_key,
    rotate_key,
    map_page,
]
