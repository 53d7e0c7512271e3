"""The web app under /app: server-rendered pages for case managers, supervisors and administrators.

Pages read what they show under the caller's own identity (row-level security applies as for the
API) and change state only through the JSON API, called in-process with the session's own bearer
token: one set of rules, validation, audit and events whether a person uses the API or a page.
"""

from __future__ import annotations

import re
import urllib.parse
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, cast
from zoneinfo import ZoneInfo

import httpx
import msgspec
import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response, Router, get, post
from litestar.datastructures import Cookie
from litestar.enums import MediaType
from litestar.exceptions import HTTPException
from litestar.params import Parameter
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, ServerSentEvent, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from services.intake.admin_metrics import dashboard_figures
from services.intake.auth import Caller, issue_token, require_staff, resolve_caller
from services.intake.notifications import NotificationController
from services.intake.problems import Problem
from services.intake.schemas import TokenRequest
from services.intake.staff_auth import token as token_handler
from services.intake.web import charts
from services.intake.web.i18n import LANG_NAMES, LANGS, code, negotiate, t
from services.intake.web.session import (
    CSRF_COOKIE,
    LANG_COOKIE,
    clear_session,
    csrf_cookie,
    csrf_valid,
    lang_cookie,
    login_csrf,
    make_csrf,
    new_nonce,
    session_cookies,
    session_token,
    token_expiring,
)
from shared.casework import FOLLOWUPS, INTERVENTION_TYPES, MEASURE_VALUES, OUTCOME_SOURCES
from shared.codes import NEED_CODES
from shared.db import transaction
from shared.lifecycle import CLOSE_REASONS
from shared.regions import Region

__all__ = ["api", "has_route", "static_router", "template_config", "web_router"]

log = structlog.get_logger("refnet.web")
HERE = Path(__file__).parent
LOCAL_TZ = ZoneInfo("America/Los_Angeles")
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
PAGE_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CSP}
HOME = {
    "case_manager": "/app/inbox",
    "supervisor": "/app/queue",
    "admin": "/app/dashboard",
    "evaluator": "/app/map",
}
NAV = {
    "case_manager": (("/app/inbox", "nav.inbox"),),
    "supervisor": (("/app/queue", "nav.queue"), ("/app/team", "nav.team"), ("/app/map", "nav.map")),
    "admin": (
        ("/app/dashboard", "nav.dashboard"),
        ("/app/queue", "nav.queue"),
        ("/app/roster", "nav.roster"),
        ("/app/partners", "nav.partners"),
        ("/app/map", "nav.map"),
    ),
    "evaluator": (("/app/map", "nav.map"),),
}
DECLINE_REASONS = ("capacity", "needs", "language", "conflict", "other")
_FLASH = re.compile(r"^[a-z_]+\.[a-z_]+$")


# ---- rendering -------------------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(when=_when, duration=_duration, short=_short, left=_left)
    return env


def static_router() -> Router:
    return create_static_files_router(
        path="/app/static", directories=[HERE / "static"], name="web-static", include_in_schema=False
    )


def _when(value: datetime | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        moment = value
    return moment.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")


def _duration(seconds: float | None, lang: str = "en") -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return t(lang, "seconds", n=f"{seconds:.1f}".rstrip("0").rstrip("."))
    if seconds < 5400:
        return t(lang, "minutes", n=f"{seconds / 60:.1f}".rstrip("0").rstrip("."))
    return t(lang, "hours", n=f"{seconds / 3600:.1f}".rstrip("0").rstrip("."))


def _left(deadline: datetime, expired: str) -> str:
    """Time left until ``deadline`` as "3h 59m 12s" (the script keeps it ticking)."""
    seconds = int((deadline - datetime.now(UTC)).total_seconds())
    if seconds <= 0:
        return expired
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def _short(value: object) -> str:
    """The first block of a UUID: enough to tell referrals apart on a page, never a name."""
    return str(value).split("-")[0]


def _lang(request: Request[Any, Any, Any]) -> str:
    return negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def _translators(lang: str) -> dict[str, Any]:
    def tr(key: str, **values: object) -> str:
        return t(lang, key, **values)

    def cd(kind: str, value: str | None) -> str:
        return code(lang, kind, value)

    return {"lang": lang, "t": tr, "code": cd, "langs": [(c, LANG_NAMES[c]) for c in LANGS]}


async def _context(request: Request[Any, Any, Any], caller: Caller | None, **extra: Any) -> dict[str, Any]:
    lang = _lang(request)
    ctx: dict[str, Any] = {
        **_translators(lang),
        "path": request.url.path,
        "caller": caller,
        "nav": [],
        "display_name": "",
        "csrf": "",
        "flash": None,
        "error": None,
        "live": None,
        "refresh": None,
        "region_names": {r.code: r.name for r in request.app.state.regions.regions},
    }
    msg = request.query_params.get("msg")
    if msg and _FLASH.match(msg) and t(lang, msg) != msg:
        ctx["flash"] = msg
    if caller is not None:
        settings = request.app.state.settings
        nonce = request.cookies.get(CSRF_COOKIE) or ""
        ctx["csrf"] = make_csrf(settings.secret_key, nonce, caller.id) if nonce else ""
        ctx["nav"] = [(href, key) for href, key in NAV.get(caller.role, ())]
        async with transaction(request.app.state.pool, caller.identity) as conn:
            ctx["display_name"] = (
                await conn.fetchval(
                    "SELECT coalesce(nullif(display_name, ''), email) FROM staff WHERE id = $1", caller.id
                )
                or ""
            )
    ctx.update(extra)
    return ctx


def _page(
    request: Request[Any, Any, Any],
    template: str,
    ctx: Mapping[str, Any],
    *,
    status: int = 200,
    cookies: list[Cookie] | None = None,
) -> Template:
    cookies = list(cookies or [])
    caller = ctx.get("caller")
    token = session_token(request)
    if isinstance(caller, Caller) and token:
        # Sliding session: a page view in the second half of the token's life gets a fresh token,
        # so an idle session ends after REFNET_TOKEN_TTL_SECONDS but an active one does not.
        settings = request.app.state.settings
        ttl = settings.token_ttl_seconds
        if token_expiring(settings.secret_key, token, ttl):
            fresh = issue_token(settings.secret_key, caller.id, caller.role, caller.region or None, ttl)
            cookies.extend(session_cookies(request, fresh, ttl, None))
    return Template(
        template_name=template,
        context=dict(ctx),
        status_code=status,
        headers=PAGE_HEADERS,
        cookies=cookies,
        media_type=MediaType.HTML,
    )


def _redirect(path: str, **query: str) -> Redirect:
    url = path + ("?" + urllib.parse.urlencode(query) if query else "")
    return Redirect(url, status_code=303, headers={"Cache-Control": "no-store"})


def _safe_next(value: str | None) -> str | None:
    """Only a local /app path may be a redirect target (no open redirects)."""
    if not value or not value.startswith("/app") or value.startswith("//") or "\\" in value:
        return None
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme or parsed.netloc:
        return None
    return value


async def _caller(request: Request[Any, Any, Any]) -> Caller:
    caller = await resolve_caller(request)
    if caller.kind != "staff":
        raise Problem(403, "Pages are for staff.")
    return caller


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


async def _checked_form(request: Request[Any, Any, Any], caller: Caller) -> dict[str, str]:
    """The posted form, after its CSRF token is verified (403 otherwise)."""
    form = await _form(request)
    settings = request.app.state.settings
    if not csrf_valid(settings.secret_key, request.cookies.get(CSRF_COOKIE), caller.id, form.get("_csrf")):
        raise Problem(403, "csrf")
    return form


async def api(
    request: Request[Any, Any, Any],
    method: str,
    path: str,
    *,
    json: Any = None,
    params: Mapping[str, str] | None = None,
) -> httpx.Response:
    """Call the JSON API in-process as the signed-in person (their bearer token, their rules)."""
    headers = {"authorization": request.headers.get("authorization", "")}
    request_id = request.scope.get("state", {}).get("request_id")
    if request_id:
        headers["x-request-id"] = request_id
    transport = httpx.ASGITransport(app=cast(Any, request.app), client=("127.0.0.1", 0))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://intake.internal", timeout=30
    ) as client:
        return await client.request(method, path, json=json, params=params, headers=headers)


def has_route(request: Request[Any, Any, Any], method: str, path: str) -> bool:
    """Whether the app serves ``method path`` (path with ``{}`` for parameters): pages built on other
    teams' endpoints show them only once they exist."""
    want = path.rstrip("/") or "/"
    for route in request.app.routes:
        shape = re.sub(r"\{[^}]+\}", "{}", route.path).rstrip("/") or "/"
        if shape == want and method in getattr(route, "methods", ()):
            return True
    return False


def _problem_detail(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("detail", ""))
    except ValueError:
        return ""


# ---- errors ----------------------------------------------------------------------------------------


def _error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        query = {"expired": "1"}
        if request.method == "GET" and _safe_next(target):
            query["next"] = target
        resp = _redirect("/app/login", **query)
        if session_token(request):
            clear_session(resp)
        return resp
    if status >= 500:
        log.error("web.unhandled", error=type(exc).__name__, path=request.url.path, exc_info=exc)
    lang = _lang(request)
    key = {403: "error.forbidden", 404: "error.not_found"}.get(status, "error.generic")
    if isinstance(exc, Problem) and exc.detail == "csrf":
        key = "csrf.failed"
    ctx = {
        **_translators(lang),
        "path": request.url.path,
        "caller": None,
        "nav": [],
        "display_name": "",
        "csrf": "",
        "flash": None,
        "error": key,
        "live": None,
        "refresh": None,
        "status": status,
        "region_names": {},
    }
    return _page(request, "error.html", ctx, status=status)


# ---- sign in and out -------------------------------------------------------------------------------


@get("/", include_in_schema=False)
async def home(request: Request[Any, Any, Any]) -> Redirect:
    caller = await _caller(request)
    return _redirect(HOME.get(caller.role, "/app/login"))


@get("/login", include_in_schema=False)
async def login_page(request: Request[Any, Any, Any]) -> Template:
    nonce = request.cookies.get(CSRF_COOKIE) or new_nonce()
    settings = request.app.state.settings
    msg = None
    if request.query_params.get("expired"):
        msg = "login.expired"
    elif request.query_params.get("out"):
        msg = "login.signed_out"
    ctx = await _context(
        request,
        None,
        login_csrf=login_csrf(settings.secret_key, nonce),
        next=_safe_next(request.query_params.get("next")) or "",
        email="",
        flash=msg,
    )
    return _page(request, "login.html", ctx, cookies=[csrf_cookie(request, nonce)])


@post("/login", include_in_schema=False, status_code=303)
async def login_submit(request: Request[Any, Any, Any]) -> Response[Any]:
    form = await _form(request)
    settings = request.app.state.settings
    nonce = request.cookies.get(CSRF_COOKIE)
    email = form.get("email", "").strip()
    next_path = _safe_next(form.get("next"))

    async def again(error: str, status: int) -> Template:
        fresh = nonce or new_nonce()
        ctx = await _context(
            request,
            None,
            login_csrf=login_csrf(settings.secret_key, fresh),
            next=next_path or "",
            email=email,
            error=error,
        )
        return _page(request, "login.html", ctx, status=status, cookies=[csrf_cookie(request, fresh)])

    if not csrf_valid(settings.secret_key, nonce, "login", form.get("_csrf")):
        return await again("csrf.failed", 403)
    try:
        data = msgspec.convert({"email": email, "password": form.get("password", "")}, TokenRequest)
    except msgspec.ValidationError:
        return await again("login.invalid", 422)
    try:
        # The API's own sign-in: argon2, back-off after failures, audit of success and failure.
        issued = await token_handler.fn(request=request, data=data)
    except Problem as exc:
        return await again("login.locked" if exc.status_code == 429 else "login.failed", exc.status_code)
    claims_role = _role_of(settings.secret_key, issued.access_token)
    target = next_path or HOME.get(claims_role, "/app/login")
    resp = _redirect(target)
    # A new CSRF nonce at every sign-in: a token planted before login is worthless after it.
    resp.cookies.extend(session_cookies(request, issued.access_token, issued.expires_in, new_nonce()))
    return resp


def _role_of(secret: str, token: str) -> str:
    import jwt

    try:
        return str(jwt.decode(token, secret, algorithms=["HS256"], issuer="refnet").get("role", ""))
    except jwt.PyJWTError:
        return ""


@post("/logout", include_in_schema=False, status_code=303)
async def logout(request: Request[Any, Any, Any]) -> Redirect:
    caller = await _caller(request)
    await _checked_form(request, caller)
    resp = _redirect("/app/login", out="1")
    clear_session(resp)
    return resp


@get("/lang/{lang_code:str}", include_in_schema=False)
async def set_language(request: Request[Any, Any, Any], lang_code: str) -> Redirect:
    lang = lang_code if lang_code in LANGS else "en"
    resp = _redirect(_safe_next(request.query_params.get("next")) or "/app/login")
    resp.cookies.append(lang_cookie(request, lang))
    return resp


@get("/session", include_in_schema=False)
async def session_check(request: Request[Any, Any, Any]) -> Response[bytes]:
    """For the page script: is the session still valid? (204, or 401 via the error handler)."""
    await _caller(request)
    return Response(b"", status_code=204, headers={"Cache-Control": "no-store"})


@get("/events", include_in_schema=False, guards=[require_staff()])
async def events(
    request: Request[Any, Any, Any],
    last_event_id: Annotated[str | None, Parameter(header="Last-Event-ID", required=False)] = None,
    after: Annotated[str | None, Parameter(query="after", required=False)] = None,
) -> ServerSentEvent:
    """The signed-in person's notification stream for EventSource (which cannot send a Bearer header):
    the API's own stream handler, authenticated by the session cookie. ``after`` is the newest
    notification the page already reflects, so a fresh page does not replay the backlog; on
    reconnection the browser's own Last-Event-ID takes over."""
    handler = NotificationController.stream.fn
    stream: ServerSentEvent = await handler(None, request=request, last_event_id=last_event_id or after)
    return stream


# ---- case managers ---------------------------------------------------------------------------------


async def _inbox_data(request: Request[Any, Any, Any], caller: Caller) -> dict[str, Any]:
    async with transaction(request.app.state.pool, caller.identity) as conn:
        offers = await conn.fetch(
            "SELECT a.id, a.referral_id, a.offered_at, a.respond_by, r.region, r.needs, r.urgency"
            " FROM assignments a JOIN referrals r ON r.id = a.referral_id"
            " WHERE a.case_manager_id = $1 AND a.state = 'offered' ORDER BY a.respond_by LIMIT 100",
            caller.id,
        )
        cases = await conn.fetch(
            "SELECT a.id, a.referral_id, a.responded_at, r.status, r.region, r.needs, r.urgency, r.received_at,"
            " r.updated_at FROM assignments a JOIN referrals r ON r.id = a.referral_id"
            " WHERE a.case_manager_id = $1 AND a.state = 'accepted' ORDER BY r.updated_at DESC LIMIT 200",
            caller.id,
        )
    return {
        "offers": [dict(r) for r in offers],
        "cases": [dict(r) for r in cases],
        "reasons": DECLINE_REASONS,
        "now": datetime.now(UTC),
    }


@get("/inbox", include_in_schema=False, guards=[require_staff("case_manager")])
async def inbox(request: Request[Any, Any, Any]) -> Template:
    caller = await _caller(request)
    # The newest notification first, then the data: anything arriving in between is both shown and
    # replayed (a harmless refresh), never lost.
    async with transaction(request.app.state.pool, caller.identity) as conn:
        seen = await conn.fetchval(
            "SELECT coalesce(max(id), 0) FROM notifications WHERE recipient_id = $1", caller.id
        )
    data = await _inbox_data(request, caller)
    ctx = await _context(
        request,
        caller,
        **data,
        live={"src": f"/app/events?after={seen}", "fragment": "/app/inbox/fragment", "target": "inbox-body"},
    )
    return _page(request, "inbox.html", ctx)


@get("/inbox/fragment", include_in_schema=False, guards=[require_staff("case_manager")])
async def inbox_fragment(request: Request[Any, Any, Any]) -> Template:
    """The inbox's offers and caseload alone, for the live update (no layout)."""
    caller = await _caller(request)
    ctx = await _context(request, caller, **await _inbox_data(request, caller))
    return _page(request, "_inbox_body.html", ctx)


@post("/offers/{assignment_id:str}/accept", include_in_schema=False, guards=[require_staff("case_manager")])
async def accept_offer(request: Request[Any, Any, Any], assignment_id: str) -> Redirect:
    caller = await _caller(request)
    await _checked_form(request, caller)
    resp = await api(request, "POST", f"/v1/assignments/{_uuid(assignment_id)}/accept")
    if resp.status_code == 200:
        return _redirect("/app/inbox", msg="offer.accepted")
    if resp.status_code == 409:
        return _redirect("/app/inbox", msg="offer.closed")
    raise Problem(resp.status_code, _problem_detail(resp))


@post("/offers/{assignment_id:str}/decline", include_in_schema=False, guards=[require_staff("case_manager")])
async def decline_offer(request: Request[Any, Any, Any], assignment_id: str) -> Redirect:
    caller = await _caller(request)
    form = await _checked_form(request, caller)
    reason = form.get("reason", "other")
    if reason not in DECLINE_REASONS:
        reason = "other"
    detail = form.get("detail", "").strip()[:900]
    text = f"{reason}: {detail}" if detail else reason
    resp = await api(
        request, "POST", f"/v1/assignments/{_uuid(assignment_id)}/decline", json={"reason": text}
    )
    if resp.status_code == 200:
        return _redirect("/app/inbox", msg="offer.declined")
    if resp.status_code == 409:
        return _redirect("/app/inbox", msg="offer.closed")
    raise Problem(resp.status_code, _problem_detail(resp))


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Problem(404, "not found") from None


# Case work through the lifecycle API (services/intake/cases.py): first contact, interventions,
# follow-up outcomes, closing, history. Forms appear when the app serves those endpoints.
CONTACT_ROUTE = ("POST", "/v1/referrals/{}/contact")
CONTACT_METHODS = ("in_person", "phone", "video", "text", "other")


async def _get_json(request: Request[Any, Any, Any], path: str) -> Any:
    resp = await api(request, "GET", path)
    return resp.json() if resp.status_code == 200 else None


@get("/cases/{referral_id:str}", include_in_schema=False, guards=[require_staff("case_manager")])
async def case_page(request: Request[Any, Any, Any], referral_id: str) -> Template:
    caller = await _caller(request)
    rid = _uuid(referral_id)
    status = await api(request, "GET", f"/v1/referrals/{rid}")
    if status.status_code != 200:
        raise Problem(status.status_code if status.status_code in (403, 404) else 404, "not found")
    referral = status.json()
    # The API's audited read: every view of a youth's details is a row in the audit log.
    details = await api(request, "GET", f"/v1/referrals/{rid}/details")
    pii: dict[str, Any] | None = None
    pii_gone = False
    if details.status_code == 200:
        pii = details.json()
    elif details.status_code == 410:
        pii_gone = True
    else:
        raise Problem(details.status_code if details.status_code in (403, 404) else 404, "not found")
    lifecycle = has_route(request, *CONTACT_ROUTE)
    casework: dict[str, Any] = {}
    if lifecycle:
        casework["history"] = await _get_json(request, f"/v1/referrals/{rid}/history")
        if referral["status"] in ("engaged", "closed"):
            casework["interventions"] = await _get_json(request, f"/v1/referrals/{rid}/interventions")
            casework["outcomes"] = await _get_json(request, f"/v1/referrals/{rid}/outcomes")
    ctx = await _context(
        request,
        caller,
        referral=referral,
        pii=pii,
        pii_gone=pii_gone,
        lifecycle=lifecycle,
        casework=casework,
        today=datetime.now(LOCAL_TZ).date().isoformat(),
        contact_methods=CONTACT_METHODS,
        intervention_types=INTERVENTION_TYPES,
        followups=FOLLOWUPS,
        sources=OUTCOME_SOURCES,
        measures=MEASURE_VALUES,
        close_reasons=CLOSE_REASONS,
    )
    return _page(request, "case.html", ctx)


async def _case_action(
    request: Request[Any, Any, Any], referral_id: str, action: str, body: dict[str, Any]
) -> Redirect:
    rid = _uuid(referral_id)
    resp = await api(request, "POST", f"/v1/referrals/{rid}/{action}", json=body)
    if resp.status_code < 300:
        return _redirect(f"/app/cases/{rid}", msg="case.saved")
    if resp.status_code in (409, 422):
        return _redirect(f"/app/cases/{rid}", msg="case.refused")
    raise Problem(resp.status_code, _problem_detail(resp))


@post("/cases/{referral_id:str}/contact", include_in_schema=False, guards=[require_staff("case_manager")])
async def case_contact(request: Request[Any, Any, Any], referral_id: str) -> Redirect:
    caller = await _caller(request)
    form = await _checked_form(request, caller)
    method = form.get("method", "")
    return await _case_action(
        request, referral_id, "contact", {"method": method} if method in CONTACT_METHODS else {}
    )


@post(
    "/cases/{referral_id:str}/interventions", include_in_schema=False, guards=[require_staff("case_manager")]
)
async def case_intervention(request: Request[Any, Any, Any], referral_id: str) -> Redirect:
    caller = await _caller(request)
    form = await _checked_form(request, caller)
    body: dict[str, Any] = {"type": form.get("type", ""), "delivered_on": form.get("delivered_on", "")}
    minutes = form.get("minutes", "").strip()
    if minutes.isdigit() and int(minutes) > 0:
        body["duration"] = f"PT{int(minutes)}M"
    return await _case_action(request, referral_id, "interventions", body)


@post("/cases/{referral_id:str}/outcomes", include_in_schema=False, guards=[require_staff("case_manager")])
async def case_outcomes(request: Request[Any, Any, Any], referral_id: str) -> Redirect:
    caller = await _caller(request)
    form = await _checked_form(request, caller)
    body: dict[str, Any] = {
        "followup": form.get("followup", ""),
        "observed_on": form.get("observed_on", ""),
        "source": form.get("source", ""),
    }
    for measure in MEASURE_VALUES:
        if form.get(measure):
            body[measure] = form[measure]
    return await _case_action(request, referral_id, "outcomes", body)


@post("/cases/{referral_id:str}/close", include_in_schema=False, guards=[require_staff("case_manager")])
async def case_close(request: Request[Any, Any, Any], referral_id: str) -> Redirect:
    caller = await _caller(request)
    form = await _checked_form(request, caller)
    return await _case_action(request, referral_id, "close", {"reason": form.get("reason", "")})


# ---- supervisors -----------------------------------------------------------------------------------

# Routing admin endpoints (services/intake/admin_routing.py). Pages use them when the app serves them.
QUEUE_ROUTE = ("GET", "/v1/admin/queue")
EXPLAIN_ROUTE = ("GET", "/v1/referrals/{}/routing")
MANUAL_ROUTE = ("POST", "/v1/admin/referrals/{}/assign")
CASE_MANAGERS_ROUTE = ("GET", "/v1/admin/case-managers")


async def _case_managers(request: Request[Any, Any, Any], region: str | None = None) -> list[dict[str, Any]]:
    """Case manager profiles with their load, through the routing admin API (a supervisor: their region)."""
    resp = await api(request, "GET", "/v1/admin/case-managers", params={"region": region} if region else None)
    if resp.status_code != 200:
        raise Problem(resp.status_code, _problem_detail(resp))
    items: list[dict[str, Any]] = resp.json()["items"]
    return sorted(items, key=lambda c: (c["regions"], c["name"]))


@get("/queue", include_in_schema=False, guards=[require_staff("supervisor", "admin")])
async def queue_page(request: Request[Any, Any, Any]) -> Template:
    caller = await _caller(request)
    items: list[dict[str, Any]]
    if has_route(request, *QUEUE_ROUTE):
        resp = await api(request, "GET", "/v1/admin/queue", params={"limit": "200"})
        if resp.status_code != 200:
            raise Problem(resp.status_code, _problem_detail(resp))
        items = resp.json()["items"]
    else:
        # Until the routing admin API is there: the same order from the table, under row-level security.
        now = datetime.now(UTC)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            rows = await conn.fetch(
                "SELECT id, region, needs, language, urgency, unroutable_reason, received_at FROM referrals"
                " WHERE status = 'unroutable' ORDER BY (urgency = 'urgent') DESC, received_at LIMIT 200"
            )
        items = [
            {
                "referral_id": str(r["id"]),
                "region": r["region"],
                "needs": list(r["needs"]),
                "language": r["language"],
                "urgency": r["urgency"],
                "reason": r["unroutable_reason"],
                "waiting_seconds": int((now - r["received_at"]).total_seconds()),
                "failed_offers": None,
            }
            for r in rows
        ]
    ctx = await _context(request, caller, items=items)
    return _page(request, "queue.html", ctx)


@get("/queue/{referral_id:str}", include_in_schema=False, guards=[require_staff("supervisor", "admin")])
async def queue_item(request: Request[Any, Any, Any], referral_id: str) -> Template:
    caller = await _caller(request)
    rid = _uuid(referral_id)
    status = await api(request, "GET", f"/v1/referrals/{rid}")
    if status.status_code != 200:
        raise Problem(404, "not found")
    referral = status.json()
    explanation: Any = None
    explain_available = has_route(request, *EXPLAIN_ROUTE)
    if explain_available:
        resp = await api(request, "GET", f"/v1/referrals/{rid}/routing")
        if resp.status_code == 200:
            explanation = resp.json()
    manual_available = has_route(request, *MANUAL_ROUTE) and has_route(request, *CASE_MANAGERS_ROUTE)
    case_managers = (
        await _case_managers(request, referral.get("region"))
        if manual_available and referral["status"] == "unroutable" and referral.get("region")
        else []
    )
    ctx = await _context(
        request,
        caller,
        referral=referral,
        explanation=explanation,
        explain_available=explain_available,
        manual_available=manual_available,
        case_managers=case_managers,
    )
    return _page(request, "queue_item.html", ctx)


@post(
    "/queue/{referral_id:str}/assign", include_in_schema=False, guards=[require_staff("supervisor", "admin")]
)
async def queue_assign(request: Request[Any, Any, Any], referral_id: str) -> Redirect:
    caller = await _caller(request)
    form = await _checked_form(request, caller)
    rid = _uuid(referral_id)
    if not has_route(request, *MANUAL_ROUTE):
        raise Problem(404, "not found")
    body = {"case_manager_id": form.get("case_manager_id", ""), "reason": form.get("reason", "").strip()}
    resp = await api(request, "POST", f"/v1/admin/referrals/{rid}/assign", json=body)
    if resp.status_code < 300:
        return _redirect("/app/queue", msg="queue.assigned")
    if resp.status_code in (409, 422):
        return _redirect(f"/app/queue/{rid}", msg="queue.assign_failed")
    raise Problem(resp.status_code, _problem_detail(resp))


@get("/team", include_in_schema=False, guards=[require_staff("supervisor", "admin")])
async def team_page(request: Request[Any, Any, Any]) -> Template:
    caller = await _caller(request)
    if has_route(request, *CASE_MANAGERS_ROUTE):
        case_managers = await _case_managers(request)
    else:
        async with transaction(request.app.state.pool, caller.identity) as conn:
            rows = await conn.fetch(
                "SELECT c.staff_id AS id, coalesce(nullif(s.display_name, ''), s.email) AS name, c.regions,"
                " c.needs, c.languages, c.capacity, c.active_count, c.status, c.away_until"
                " FROM case_managers c JOIN staff s ON s.id = c.staff_id ORDER BY name"
            )
        case_managers = [dict(r) for r in rows]
    ctx = await _context(request, caller, case_managers=case_managers)
    return _page(request, "team.html", ctx)


# ---- administrators --------------------------------------------------------------------------------


def _compact(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"


def _dashboard_charts(lang: str, f: Any, regions: Sequence[Region]) -> dict[str, Any]:
    hours = [p.start.astimezone(LOCAL_TZ).strftime("%H:00") for p in f.last_24h]
    timeline = charts.line_chart(
        "timeline",
        t(lang, "dash.timeline"),
        hours,
        [
            (t(lang, "dash.received"), [p.received for p in f.last_24h]),
            (t(lang, "dash.assigned"), [p.assigned for p in f.last_24h]),
            (t(lang, "dash.unroutable"), [p.unroutable for p in f.last_24h]),
        ],
    )

    def hist(uid: str, title_key: str, d: Any) -> Any:
        # Compact upper bounds ("0.5s", "5m", "1h"); the last bucket is everything above the last bound.
        labels = [
            _compact(b.le) if b.le is not None else ">" + _compact(d.histogram[-2].le) for b in d.histogram
        ]
        return charts.histogram(
            uid,
            t(lang, title_key),
            [(label, b.count) for label, b in zip(labels, d.histogram, strict=True)],
            p50=_duration(d.p50_seconds, lang) if d.count else None,
            p90=_duration(d.p90_seconds, lang) if d.count else None,
        )

    region_names = {"out_of_area": t(lang, "map.out_of_area"), **{r.code: r.name for r in regions}}
    return {
        "status_chart": charts.bar_chart(
            "by-status",
            t(lang, "dash.totals"),
            [(code(lang, "status", s), n) for s, n in sorted(f.referrals_by_status.items())],
        ),
        "timeline_chart": timeline,
        "timeline_rows": [
            (label, p.received, p.assigned, p.unroutable) for label, p in zip(hours, f.last_24h, strict=True)
        ],
        "tta_chart": hist("tta", "dash.tta", f.time_to_assignment),
        "ttacc_chart": hist("ttacc", "dash.ttacc", f.time_to_acceptance),
        "region_chart": charts.bar_chart(
            "by-region",
            t(lang, "dash.per_region"),
            [(region_names.get(r, r.replace("_", " ")), n) for r, n in f.referrals_by_region.items()],
        ),
        "partner_chart": charts.bar_chart(
            "by-partner", t(lang, "dash.per_partner"), [(p.name, p.count) for p in f.referrals_by_partner]
        ),
        "utilisation_chart": charts.bar_chart(
            "utilisation",
            t(lang, "dash.utilisation"),
            [
                (c.name, round(100 * c.active / c.capacity) if c.capacity else 0)
                for c in f.utilisation.case_managers
            ],
            unit="%",
            maximum=100,
        ),
    }


async def _dashboard_context(request: Request[Any, Any, Any], caller: Caller) -> dict[str, Any]:
    figures = await dashboard_figures(request.app.state, caller.identity)
    lang = _lang(request)
    return await _context(
        request, caller, f=figures, **_dashboard_charts(lang, figures, request.app.state.regions.regions)
    )


@get("/dashboard", include_in_schema=False, guards=[require_staff("admin")])
async def dashboard(request: Request[Any, Any, Any]) -> Template:
    caller = await _caller(request)
    ctx = await _dashboard_context(request, caller)
    ctx["refresh"] = {"src": "/app/dashboard/panels", "target": "panels", "every": 5}
    return _page(request, "dashboard.html", ctx)


@get("/dashboard/panels", include_in_schema=False, guards=[require_staff("admin")])
async def dashboard_panels(request: Request[Any, Any, Any]) -> Template:
    caller = await _caller(request)
    return _page(request, "_panels.html", await _dashboard_context(request, caller))


@get("/roster", include_in_schema=False, guards=[require_staff("admin")])
async def roster(request: Request[Any, Any, Any]) -> Template:
    caller = await _caller(request)
    async with transaction(request.app.state.pool, caller.identity) as conn:
        rows = await conn.fetch(
            "SELECT s.id, coalesce(nullif(s.display_name, ''), s.email) AS name, s.email, s.role, s.region,"
            " c.regions, c.needs, c.languages, c.capacity, c.active_count, c.status"
            " FROM staff s LEFT JOIN case_managers c ON c.staff_id = s.id ORDER BY s.role, name"
        )
    ctx = await _context(request, caller, staff=[dict(r) for r in rows])
    return _page(request, "roster.html", ctx)


PROFILE_ROUTE = ("PATCH", "/v1/admin/case-managers/{}")
CM_STATUSES = ("active", "away", "inactive")


def _profile_body(form: Mapping[str, str], *, with_identity: bool) -> dict[str, Any]:
    """A case manager profile from the roster form, in the routing admin API's terms."""
    body: dict[str, Any] = {
        "capacity": int(form["capacity"]) if form.get("capacity", "").strip().isdigit() else None,
        "status": form.get("status") if form.get("status") in CM_STATUSES else None,
        "needs": [n for n in NEED_CODES if form.get(f"need_{n}")] or None,
        "languages": [x.strip().lower() for x in form.get("languages", "").split(",") if x.strip()] or None,
    }
    if body["status"] == "away":
        body["away_until"] = form.get("away_until") or None
    if with_identity:
        body.update(
            email=form.get("email", "").strip(),
            name=form.get("name", "").strip(),
            regions=[form["region"]] if form.get("region") else [],
        )
    return {k: v for k, v in body.items() if v is not None}


@get("/roster/new", include_in_schema=False, guards=[require_staff("admin")])
async def roster_new(request: Request[Any, Any, Any]) -> Template:
    caller = await _caller(request)
    ctx = await _context(request, caller, profile=None, needs=NEED_CODES, statuses=CM_STATUSES, created=None)
    return _page(request, "roster_edit.html", ctx)


@post("/roster/new", include_in_schema=False, guards=[require_staff("admin")], status_code=200)
async def roster_create(request: Request[Any, Any, Any]) -> Response[Any]:
    caller = await _caller(request)
    form = await _checked_form(request, caller)
    resp = await api(request, "POST", "/v1/admin/case-managers", json=_profile_body(form, with_identity=True))
    if resp.status_code == 201:
        # A generated first password is shown once, in this response only.
        ctx = await _context(
            request, caller, profile=None, needs=NEED_CODES, statuses=CM_STATUSES, created=resp.json()
        )
        return _page(request, "roster_edit.html", ctx)
    if resp.status_code in (409, 422):
        ctx = await _context(
            request,
            caller,
            profile=None,
            needs=NEED_CODES,
            statuses=CM_STATUSES,
            created=None,
            error="roster.refused",
            problem=_problem_detail(resp),
        )
        return _page(request, "roster_edit.html", ctx, status=resp.status_code)
    raise Problem(resp.status_code, _problem_detail(resp))


@get("/roster/{case_manager_id:str}", include_in_schema=False, guards=[require_staff("admin", "supervisor")])
async def roster_edit(request: Request[Any, Any, Any], case_manager_id: str) -> Template:
    caller = await _caller(request)
    resp = await api(request, "GET", f"/v1/admin/case-managers/{_uuid(case_manager_id)}")
    if resp.status_code != 200:
        raise Problem(404, "not found")
    ctx = await _context(
        request, caller, profile=resp.json(), needs=NEED_CODES, statuses=CM_STATUSES, created=None
    )
    return _page(request, "roster_edit.html", ctx)


@post("/roster/{case_manager_id:str}", include_in_schema=False, guards=[require_staff("admin", "supervisor")])
async def roster_save(request: Request[Any, Any, Any], case_manager_id: str) -> Redirect:
    caller = await _caller(request)
    form = await _checked_form(request, caller)
    cid = _uuid(case_manager_id)
    resp = await api(
        request, "PATCH", f"/v1/admin/case-managers/{cid}", json=_profile_body(form, with_identity=False)
    )
    back = "/app/roster" if caller.role == "admin" else "/app/team"
    if resp.status_code == 200:
        return _redirect(back, msg="roster.saved")
    if resp.status_code in (409, 422):
        return _redirect(f"/app/roster/{cid}", msg="roster.refused")
    raise Problem(resp.status_code, _problem_detail(resp))


@get("/partners", include_in_schema=False, guards=[require_staff("admin")])
async def partners_page(request: Request[Any, Any, Any]) -> Template:
    caller = await _caller(request)
    resp = await api(request, "GET", "/v1/admin/partners")
    resp.raise_for_status()
    ctx = await _context(request, caller, partners=resp.json())
    return _page(request, "partners.html", ctx)


async def _keys_page(
    request: Request[Any, Any, Any], caller: Caller, pid: str, new_key: dict[str, Any] | None = None
) -> Template:
    partners = await api(request, "GET", "/v1/admin/partners")
    partners.raise_for_status()
    partner = next((p for p in partners.json() if p["id"] == pid), None)
    if partner is None:
        raise Problem(404, "not found")
    keys = await api(request, "GET", f"/v1/admin/partners/{pid}/keys")
    keys.raise_for_status()
    ctx = await _context(request, caller, partner=partner, keys=keys.json(), new_key=new_key)
    return _page(request, "partner_keys.html", ctx)


@get("/partners/{partner_id:str}", include_in_schema=False, guards=[require_staff("admin")])
async def partner_keys(request: Request[Any, Any, Any], partner_id: str) -> Template:
    caller = await _caller(request)
    return await _keys_page(request, caller, _uuid(partner_id))


@post(
    "/partners/{partner_id:str}/keys",
    include_in_schema=False,
    guards=[require_staff("admin")],
    status_code=200,
)
async def create_key(request: Request[Any, Any, Any], partner_id: str) -> Template:
    caller = await _caller(request)
    form = await _checked_form(request, caller)
    pid = _uuid(partner_id)
    resp = await api(
        request, "POST", f"/v1/admin/partners/{pid}/keys", json={"label": form.get("label", "")[:100]}
    )
    if resp.status_code != 201:
        raise Problem(resp.status_code, _problem_detail(resp))
    # Shown once, in this response only (never in a URL or a redirect).
    return await _keys_page(request, caller, pid, new_key=resp.json())


@post("/keys/{key_id:str}/revoke", include_in_schema=False, guards=[require_staff("admin")], status_code=303)
async def revoke_key(request: Request[Any, Any, Any], key_id: str) -> Redirect:
    caller = await _caller(request)
    form = await _checked_form(request, caller)
    pid = _uuid(form.get("partner_id", ""))
    resp = await api(
        request,
        "POST",
        f"/v1/admin/keys/{_uuid(key_id)}/revoke",
        json={"reason": form.get("reason", "")[:500]},
    )
    if resp.status_code != 200:
        raise Problem(resp.status_code, _problem_detail(resp))
    return _redirect(f"/app/partners/{pid}", msg="keys.revoked_ok")


@post("/keys/{key_id:str}/rotate", include_in_schema=False, guards=[require_staff("admin")], status_code=200)
async def rotate_key(request: Request[Any, Any, Any], key_id: str) -> Template:
    caller = await _caller(request)
    form = await _checked_form(request, caller)
    pid = _uuid(form.get("partner_id", ""))
    resp = await api(request, "POST", f"/v1/admin/keys/{_uuid(key_id)}/rotate", json={})
    if resp.status_code != 201:
        raise Problem(resp.status_code, _problem_detail(resp))
    return await _keys_page(request, caller, pid, new_key=resp.json())


# ---- the map (aggregate counts only) ---------------------------------------------------------------


@get("/map", include_in_schema=False, guards=[require_staff("supervisor", "admin", "evaluator")])
async def map_page(request: Request[Any, Any, Any]) -> Template:
    caller = await _caller(request)
    async with transaction(request.app.state.pool, caller.identity) as conn:
        rows = await conn.fetch("SELECT region, count(*)::int AS n FROM referrals GROUP BY region")
    counts = {(r["region"] or "out_of_area"): r["n"] for r in rows}
    lang = _lang(request)
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
    rows_out = [
        (names[r.code], counts[r.code] if r.code in counts or not hidden else hidden)
        for r in catalogue.regions
    ]
    if counts.get("out_of_area"):
        rows_out.append((t(lang, "map.out_of_area"), counts["out_of_area"]))
    ctx = await _context(request, caller, map_svg=svg, rows=rows_out)
    return _page(request, "map.html", ctx)


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
        exception_handlers={HTTPException: _error_page, Exception: _error_page},
        include_in_schema=False,
    )


# Built last: the environment's globals are the helpers defined above.
template_config = TemplateConfig(engine=JinjaTemplateEngine.from_environment(_environment()))
