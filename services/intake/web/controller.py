"""The web app under /app: server-rendered pages for case managers, supervisors and administrators.

Pages act as the signed-in person through the same services as the JSON API (row-level security,
validation, audit and events alike): a page's form becomes the API's body, converted as strictly, and a
service's refusal becomes a message on the page. Pages that only read use one transaction; pages that
change state run each change in a transaction of its own, so a refused change leaves nothing behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import asyncpg
from litestar import Request, Response, Router, get, post
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.params import Parameter
from litestar.response import Redirect, ServerSentEvent, Template

from services.intake.admin import routing
from services.intake.admin.schemas import ManualAssignIn
from services.intake.cases import assignments, pii
from services.intake.cases import service as cases
from services.intake.cases.schemas import CloseIn, ContactIn, DeclineIn, InterventionIn, OutcomeIn
from services.intake.core.auth import Caller, require_staff, token_role
from services.intake.core.dependencies import CallerDb, provide_staff
from services.intake.core.middleware import request_id
from services.intake.core.problems import Problem
from services.intake.notifications import service as notifications
from services.intake.notifications.stream import event_stream, parse_cursor
from services.intake.partners import service as partners
from services.intake.partners.schemas import KeyRotateIn
from services.intake.referrals.service import read_referral
from services.intake.staff import service as staff
from services.intake.staff.schemas import CaseManagerIn, CaseManagerPatch, TokenRequest
from services.intake.web import charts, forms
from services.intake.web import service as web
from services.intake.web.dashboard import dashboard_charts
from services.intake.web.i18n import LANGS, t
from services.intake.web.render import (
    HOME,
    checked_form,
    context,
    error_page,
    form,
    lang_of,
    page,
    plain,
    redirect,
    safe_next,
)
from services.intake.web.session import (
    CSRF_COOKIE,
    clear_session,
    csrf_cookie,
    csrf_valid,
    lang_cookie,
    login_csrf,
    new_nonce,
    session_cookies,
)
from shared.casework import FOLLOWUPS, INTERVENTION_TYPES, LOCAL_TZ, MEASURE_VALUES, OUTCOME_SOURCES
from shared.codes import NEED_CODES
from shared.lifecycle import CLOSE_REASONS

__all__ = ["web_router"]

# Status pages answer 409/422 refusals with a message; anything else is an error page.
_REFUSED = (409, 422)


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Problem(404, "not found") from None


async def _attempt(
    db: CallerDb,
    change: Callable[[asyncpg.Connection], Awaitable[object]],
    refused: tuple[int, ...] = _REFUSED,
) -> Problem | None:
    """Run one change in a transaction of its own: None when done, or the service's refusal (409/422),
    rolled back so a refused change leaves nothing behind; any other failure raises."""
    try:
        async with db.transaction() as conn:
            await change(conn)
    except Problem as exc:
        if exc.status_code in refused:
            return exc
        raise
    return None


async def _ctx(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, **extra: Any
) -> dict[str, Any]:
    return context(request, caller, await web.display_name(conn, caller.id), **extra)


# ---- sign in and out -------------------------------------------------------------------------------


@get("/", include_in_schema=False)
async def home(caller: Caller) -> Redirect:
    return redirect(HOME.get(caller.role, "/app/login"))


@get("/login", include_in_schema=False)
async def login_page(request: Request[Any, Any, Any]) -> Template:
    nonce = request.cookies.get(CSRF_COOKIE) or new_nonce()
    settings = request.app.state.settings
    msg = None
    if request.query_params.get("expired"):
        msg = "login.expired"
    elif request.query_params.get("out"):
        msg = "login.signed_out"
    ctx = context(
        request,
        None,
        login_csrf=login_csrf(settings.secret_key, nonce),
        next=safe_next(request.query_params.get("next")) or "",
        email="",
        flash=msg,
    )
    return page(request, "login.html", ctx, cookies=[csrf_cookie(request, nonce)])


@post("/login", include_in_schema=False, status_code=303)
async def login_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    fields = await form(request)
    state = request.app.state
    settings = state.settings
    nonce = request.cookies.get(CSRF_COOKIE)
    email = fields.get("email", "").strip()
    next_path = safe_next(fields.get("next"))

    def again(error: str, status: int) -> Template:
        fresh = nonce or new_nonce()
        ctx = context(
            request,
            None,
            login_csrf=login_csrf(settings.secret_key, fresh),
            next=next_path or "",
            email=email,
            error=error,
        )
        return page(request, "login.html", ctx, status=status, cookies=[csrf_cookie(request, fresh)])

    if not csrf_valid(settings.secret_key, nonce, "login", fields.get("_csrf")):
        return again("csrf.failed", 403)
    try:
        data = forms.body(TokenRequest, {"email": email, "password": fields.get("password", "")})
    except Problem:
        return again("login.invalid", 422)
    try:
        # The API's own sign-in: argon2, back-off after failures, audit of success and failure.
        issued = await staff.sign_in(
            state.pool, settings.secret_key, settings.token_ttl_seconds, data.email, data.password
        )
    except Problem as exc:
        return again("login.locked" if exc.status_code == 429 else "login.failed", exc.status_code)
    target = next_path or HOME.get(token_role(settings.secret_key, issued.access_token), "/app/login")
    resp = redirect(target)
    # A new CSRF nonce at every sign-in: a token planted before login is worthless after it.
    resp.cookies.extend(session_cookies(request, issued.access_token, issued.expires_in, new_nonce()))
    return resp


@post("/logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any], caller: Caller) -> Redirect:
    await checked_form(request, caller)
    resp = redirect("/app/login", out="1")
    clear_session(resp)
    return resp


@get("/lang/{lang_code:str}", include_in_schema=False)
async def set_language(request: Request[Any, Any, Any], lang_code: str) -> Redirect:
    lang = lang_code if lang_code in LANGS else "en"
    resp = redirect(safe_next(request.query_params.get("next")) or "/app/login")
    resp.cookies.append(lang_cookie(request, lang))
    return resp


@get("/session", include_in_schema=False)
async def session_check(caller: Caller) -> Response[bytes]:
    """For the page script: is the session still valid? (204, or 401 via the error handler)."""
    return Response(b"", status_code=204, headers={"Cache-Control": "no-store"})


@get("/events", include_in_schema=False, guards=[require_staff()])
async def events(
    request: Request[Any, Any, Any],
    caller: Caller,
    db: CallerDb,
    last_event_id: Annotated[str | None, Parameter(header="Last-Event-ID", required=False)] = None,
    after: Annotated[str | None, Parameter(query="after", required=False)] = None,
) -> ServerSentEvent:
    """The signed-in person's notification stream for EventSource (which cannot send a Bearer header),
    authenticated by the session cookie. ``after`` is the newest notification the page already
    reflects, so a fresh page does not replay the backlog; on reconnection the browser's own
    Last-Event-ID takes over."""
    state = request.app.state
    cursor = parse_cursor(last_event_id or after)
    return event_stream(db, state.hub, caller.id, cursor, state.settings.sse_heartbeat_seconds)


# ---- case managers ---------------------------------------------------------------------------------


async def _inbox_data(conn: asyncpg.Connection, caller: Caller) -> dict[str, Any]:
    offers, cases_ = await web.inbox(conn, caller.id)
    return {"offers": offers, "cases": cases_, "reasons": forms.DECLINE_REASONS, "now": datetime.now(UTC)}


@get("/inbox", include_in_schema=False, guards=[require_staff("case_manager")])
async def inbox(request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection) -> Template:
    # The newest notification first, then the data: anything arriving in between is both shown and
    # replayed (a harmless refresh), never lost.
    seen = await notifications.latest_id(conn, caller.id)
    data = await _inbox_data(conn, caller)
    ctx = await _ctx(
        request,
        caller,
        conn,
        **data,
        live={"src": f"/app/events?after={seen}", "fragment": "/app/inbox/fragment", "target": "inbox-body"},
    )
    return page(request, "inbox.html", ctx)


@get("/inbox/fragment", include_in_schema=False, guards=[require_staff("case_manager")])
async def inbox_fragment(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection
) -> Template:
    """The inbox's offers and caseload alone, for the live update (no layout)."""
    ctx = await _ctx(request, caller, conn, **await _inbox_data(conn, caller))
    return page(request, "_inbox_body.html", ctx)


@post("/offers/{assignment_id:str}/accept", include_in_schema=False, guards=[require_staff("case_manager")])
async def accept_offer(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, assignment_id: str
) -> Redirect:
    await checked_form(request, caller)
    aid = _uuid(assignment_id)
    if await _attempt(db, lambda conn: assignments.accept(conn, caller, aid), refused=(409,)):
        return redirect("/app/inbox", msg="offer.closed")
    return redirect("/app/inbox", msg="offer.accepted")


@post("/offers/{assignment_id:str}/decline", include_in_schema=False, guards=[require_staff("case_manager")])
async def decline_offer(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, assignment_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    aid = _uuid(assignment_id)
    data = forms.body(DeclineIn, {"reason": forms.decline_reason(fields)})
    if await _attempt(db, lambda conn: assignments.decline(conn, caller, aid, data.reason), refused=(409,)):
        return redirect("/app/inbox", msg="offer.closed")
    return redirect("/app/inbox", msg="offer.declined")


@get("/cases/{referral_id:str}", include_in_schema=False, guards=[require_staff("case_manager")])
async def case_page(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, referral_id: str
) -> Template:
    rid = _uuid(referral_id)
    referral = plain(await read_referral(conn, caller, rid))
    # The audited read: every view of a youth's details is a row in the audit log.
    details: dict[str, Any] | None = None
    pii_gone = False
    try:
        details = plain(await pii.read_details(conn, caller, request.app.state.pii_keys, rid))
    except Problem as exc:
        if exc.status_code != 410:
            raise
        pii_gone = True
    casework: dict[str, Any] = {"history": plain(await cases.history(conn, rid))}
    if referral["status"] in ("engaged", "closed"):
        casework["interventions"] = plain(await cases.interventions(conn, rid))
        casework["outcomes"] = plain(await cases.outcomes(conn, rid))
    ctx = await _ctx(
        request,
        caller,
        conn,
        referral=referral,
        pii=details,
        pii_gone=pii_gone,
        casework=casework,
        today=_today(),
        contact_methods=forms.CONTACT_METHODS,
        intervention_types=INTERVENTION_TYPES,
        followups=FOLLOWUPS,
        sources=OUTCOME_SOURCES,
        measures=MEASURE_VALUES,
        close_reasons=CLOSE_REASONS,
    )
    return page(request, "case.html", ctx)


def _today() -> str:
    return datetime.now(LOCAL_TZ).date().isoformat()


async def _case_action(db: CallerDb, caller: Caller, referral_id: str, change: Any) -> Redirect:
    """One case change; a refusal (409/422) is a message on the case page."""
    rid = _uuid(referral_id)
    if await _attempt(db, lambda conn: change(conn, rid)):
        return redirect(f"/app/cases/{rid}", msg="case.refused")
    return redirect(f"/app/cases/{rid}", msg="case.saved")


def _refused_body(kind: type[Any], doc: dict[str, Any]) -> Any:
    """The form as the body ``kind``, or None when the API would refuse it (422)."""
    try:
        return forms.body(kind, doc)
    except Problem:
        return None


@post("/cases/{referral_id:str}/contact", include_in_schema=False, guards=[require_staff("case_manager")])
async def case_contact(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, referral_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    data = _refused_body(ContactIn, forms.contact_body(fields))
    if data is None:
        return redirect(f"/app/cases/{_uuid(referral_id)}", msg="case.refused")
    return await _case_action(
        db, caller, referral_id, lambda conn, rid: cases.contact(conn, caller, rid, data)
    )


@post(
    "/cases/{referral_id:str}/interventions", include_in_schema=False, guards=[require_staff("case_manager")]
)
async def case_intervention(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, referral_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    data = _refused_body(InterventionIn, forms.intervention_body(fields))
    if data is None:
        return redirect(f"/app/cases/{_uuid(referral_id)}", msg="case.refused")
    return await _case_action(
        db, caller, referral_id, lambda conn, rid: cases.add_intervention(conn, caller, rid, data)
    )


@post("/cases/{referral_id:str}/outcomes", include_in_schema=False, guards=[require_staff("case_manager")])
async def case_outcomes(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, referral_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    data = _refused_body(OutcomeIn, forms.outcome_body(fields))
    if data is None:
        return redirect(f"/app/cases/{_uuid(referral_id)}", msg="case.refused")
    return await _case_action(
        db, caller, referral_id, lambda conn, rid: cases.add_outcomes(conn, caller, rid, data)
    )


@post("/cases/{referral_id:str}/close", include_in_schema=False, guards=[require_staff("case_manager")])
async def case_close(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, referral_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    data = _refused_body(CloseIn, {"reason": fields.get("reason", "")})
    if data is None:
        return redirect(f"/app/cases/{_uuid(referral_id)}", msg="case.refused")
    return await _case_action(db, caller, referral_id, lambda conn, rid: cases.close(conn, caller, rid, data))


# ---- supervisors -----------------------------------------------------------------------------------


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
    return page(request, "queue.html", await _ctx(request, caller, conn, items=items))


@get("/queue/{referral_id:str}", include_in_schema=False, guards=[require_staff("supervisor", "admin")])
async def queue_item(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, referral_id: str
) -> Template:
    rid = _uuid(referral_id)
    try:
        referral = plain(await read_referral(conn, caller, rid))
    except Problem:
        raise Problem(404, "not found") from None
    explanation: Any = None
    try:
        explanation = plain(await routing.explain(conn, caller, request.app.state.regions, rid))
    except Problem:
        explanation = None
    case_managers = (
        await _case_managers(request, conn, caller, referral.get("region"))
        if referral["status"] == "unroutable" and referral.get("region")
        else []
    )
    ctx = await _ctx(
        request, caller, conn, referral=referral, explanation=explanation, case_managers=case_managers
    )
    return page(request, "queue_item.html", ctx)


@post(
    "/queue/{referral_id:str}/assign", include_in_schema=False, guards=[require_staff("supervisor", "admin")]
)
async def queue_assign(request: Request[Any, Any, Any], caller: Caller, referral_id: str) -> Redirect:
    fields = await checked_form(request, caller)
    rid = _uuid(referral_id)
    doc = {"case_manager_id": fields.get("case_manager_id", ""), "reason": fields.get("reason", "").strip()}
    try:
        data = forms.body(ManualAssignIn, doc)
        # Routing makes the assignment (and audits it); see services/intake/admin/routing.py.
        await routing.assign(request.app.state.bus.nc, caller, rid, data, request_id(request.scope))
    except Problem as exc:
        if exc.status_code in _REFUSED:
            return redirect(f"/app/queue/{rid}", msg="queue.assign_failed")
        raise
    return redirect("/app/queue", msg="queue.assigned")


@get("/team", include_in_schema=False, guards=[require_staff("supervisor", "admin")])
async def team_page(request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection) -> Template:
    case_managers = await _case_managers(request, conn, caller)
    return page(request, "team.html", await _ctx(request, caller, conn, case_managers=case_managers))


# ---- administrators --------------------------------------------------------------------------------


async def _dashboard_context(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection
) -> dict[str, Any]:
    state = request.app.state
    figures = await state.dashboard.figures(caller.identity)
    charts = dashboard_charts(lang_of(request), figures, state.regions.regions)
    return await _ctx(request, caller, conn, f=figures, **charts)


@get("/dashboard", include_in_schema=False, guards=[require_staff("admin")])
async def dashboard(request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection) -> Template:
    ctx = await _dashboard_context(request, caller, conn)
    ctx["refresh"] = {"src": "/app/dashboard/panels", "target": "panels", "every": 5}
    return page(request, "dashboard.html", ctx)


@get("/dashboard/panels", include_in_schema=False, guards=[require_staff("admin")])
async def dashboard_panels(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection
) -> Template:
    return page(request, "_panels.html", await _dashboard_context(request, caller, conn))


@get("/roster", include_in_schema=False, guards=[require_staff("admin")])
async def roster(request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection) -> Template:
    ctx = await _ctx(request, caller, conn, staff=await web.staff_roster(conn))
    return page(request, "roster.html", ctx)


def _profile_form(**extra: Any) -> dict[str, Any]:
    return {"needs": NEED_CODES, "statuses": forms.CM_STATUSES, **extra}


@get("/roster/new", include_in_schema=False, guards=[require_staff("admin")])
async def roster_new(request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection) -> Template:
    ctx = await _ctx(request, caller, conn, **_profile_form(profile=None, created=None))
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
        if exc.status_code not in _REFUSED:
            raise
        refused = exc
    # Its own short read: the account was created (or refused) in a transaction of its own.
    async with db.transaction() as conn:
        name = await web.display_name(conn, caller.id)
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
        profile = plain(await staff.get_case_manager(conn, caller, _uuid(case_manager_id)))
    except Problem:
        raise Problem(404, "not found") from None
    ctx = await _ctx(request, caller, conn, **_profile_form(profile=profile, created=None))
    return page(request, "roster_edit.html", ctx)


@post("/roster/{case_manager_id:str}", include_in_schema=False, guards=[require_staff("admin", "supervisor")])
async def roster_save(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb, case_manager_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    cid = _uuid(case_manager_id)
    back = "/app/roster" if caller.role == "admin" else "/app/team"
    codes = request.app.state.regions.codes
    data = _refused_body(CaseManagerPatch, forms.profile_body(fields, with_identity=False))
    if data is None or await _attempt(
        db, lambda conn: staff.update_case_manager(conn, caller, codes, cid, data)
    ):
        return redirect(f"/app/roster/{cid}", msg="roster.refused")
    return redirect(back, msg="roster.saved")


@get("/partners", include_in_schema=False, guards=[require_staff("admin")])
async def partners_page(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection
) -> Template:
    ctx = await _ctx(request, caller, conn, partners=plain(await partners.list_partners(conn)))
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
    ctx = await _ctx(request, caller, conn, partner=partner, keys=keys, new_key=new_key)
    return page(request, "partner_keys.html", ctx)


@get("/partners/{partner_id:str}", include_in_schema=False, guards=[require_staff("admin")])
async def partner_keys(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, partner_id: str
) -> Template:
    return await _keys_page(request, caller, conn, _uuid(partner_id))


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
    pid = _uuid(partner_id)
    new_key = await partners.create_key(conn, caller, pid, fields.get("label", "")[:100])
    # Shown once, in this response only (never in a URL or a redirect).
    return await _keys_page(request, caller, conn, pid, new_key=plain(new_key))


@post("/keys/{key_id:str}/revoke", include_in_schema=False, guards=[require_staff("admin")], status_code=303)
async def revoke_key(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, key_id: str
) -> Redirect:
    fields = await checked_form(request, caller)
    pid = _uuid(fields.get("partner_id", ""))
    await partners.revoke_key(conn, caller, _uuid(key_id), fields.get("reason", "")[:500])
    return redirect(f"/app/partners/{pid}", msg="keys.revoked_ok")


@post("/keys/{key_id:str}/rotate", include_in_schema=False, guards=[require_staff("admin")], status_code=200)
async def rotate_key(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, key_id: str
) -> Template:
    fields = await checked_form(request, caller)
    pid = _uuid(fields.get("partner_id", ""))
    new_key = await partners.rotate_key(conn, caller, _uuid(key_id), KeyRotateIn().grace_seconds)
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
        counts = {caller.region: counts.get(caller.region, 0)}
    svg = charts.region_map(
        "region-map",
        t(lang, "map.title"),
        catalogue.regions,
        counts,
        names,
        t(lang, "map.total", n="{n}"),
        hidden_label=hidden,
    )
    rows_out: list[tuple[str, Any]] = [
        (names[r.code], counts[r.code] if r.code in counts or not hidden else hidden)
        for r in catalogue.regions
    ]
    if counts.get("out_of_area"):
        rows_out.append((t(lang, "map.out_of_area"), counts["out_of_area"]))
    ctx = await _ctx(request, caller, conn, map_svg=svg, rows=rows_out)
    return page(request, "map.html", ctx)


def web_router() -> Router:
    """The /app pages (a new Router per app: a router belongs to one application)."""
    return Router(
        path="/app",
        route_handlers=[
            home,
            login_page,
            login_submit,
            logout,
            set_language,
            session_check,
            events,
            inbox,
            inbox_fragment,
            accept_offer,
            decline_offer,
            case_page,
            case_contact,
            case_intervention,
            case_outcomes,
            case_close,
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
        ],
        # Pages are for staff: the caller every page gets is signed in as staff (else 403).
        dependencies={"caller": Provide(provide_staff)},
        # Problem too: the app's own handler for it (problem+json) would otherwise win over Exception's.
        exception_handlers={Problem: error_page, HTTPException: error_page, Exception: error_page},
        include_in_schema=False,
    )
