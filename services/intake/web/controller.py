"""The web app under /app: server-rendered pages for case managers, supervisors and administrators.

Pages act as the signed-in person through the same services as the JSON API (row-level security,
validation, audit and events alike): a page's form becomes the API's body, converted as strictly, and a
service's refusal becomes a message on the page. Pages that only read use one transaction; pages that
change state run each change in a transaction of its own, so a refused change leaves nothing behind.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, Router, get, post
from litestar.di import Provide
from litestar.exceptions import HTTPException
from litestar.params import Parameter
from litestar.response import Redirect, ServerSentEvent, Template

from services.intake.core.auth import Caller, require_staff, token_role
from services.intake.core.dependencies import CallerDb, provide_caller, provide_staff
from services.intake.core.problems import Problem
from services.intake.notifications.stream import event_stream, parse_cursor
from services.intake.staff import service as staff
from services.intake.staff.controller import client_address, sign_in_throttle
from services.intake.staff.schemas import TokenRequest
from services.intake.web import (
    account_pages,
    admin_pages,
    case_extras,
    case_pages,
    evaluation_pages,
    forms,
    partner_pages,
    protocol_pages,
)
from services.intake.web.i18n import LANGS
from services.intake.web.render import (
    HOME,
    checked_form,
    context,
    error_page,
    form,
    page,
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

__all__ = ["root_redirect", "web_router"]


@get("/", include_in_schema=False, name="root-redirect")
async def root_redirect() -> Redirect:
    """The site's root: the web app (the API lives under /v1, its description under /schema)."""
    return Redirect("/app/", status_code=302)


@get("/", include_in_schema=False, dependencies={"caller": Provide(provide_caller)})
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
            state.pool,
            settings.secret_key,
            settings.token_ttl_seconds,
            data.email,
            data.password,
            client=client_address(request),
            throttle=sign_in_throttle(request),
        )
    except Problem as exc:
        return again("login.locked" if exc.status_code == 429 else "login.failed", exc.status_code)
    target = next_path or HOME.get(token_role(settings.secret_key, issued.access_token), "/app/login")
    if issued.password_change_required:
        target = "/app/password?required=1"  # a one-time password: nothing else works until it is changed
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
            *case_pages.ROUTES,
            *admin_pages.ROUTES,
            # Partners' and the agency's intake pages bring their own caller (issue 17).
            *partner_pages.ROUTES,
            *case_extras.ROUTES,
            *protocol_pages.ROUTES,
            *evaluation_pages.ROUTES,
            # Accounts, partners' lifecycle and the password page (issue 14).
            *account_pages.ROUTES,
        ],
        # Pages are for staff: the caller every page gets is signed in as staff (else 403).
        dependencies={"caller": Provide(provide_staff)},
        # Problem too: the app's own handler for it (problem+json) would otherwise win over Exception's.
        exception_handlers={Problem: error_page, HTTPException: error_page, Exception: error_page},
        include_in_schema=False,
    )
