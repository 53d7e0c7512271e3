"""Rendering the web app's pages: templates, translations, the shared page context, redirects and errors."""

from __future__ import annotations

import re
import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from litestar import Request, Response, Router
from litestar.datastructures import Cookie
from litestar.enums import MediaType
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from services.intake.core.auth import Caller, refresh_token
from services.intake.core.problems import Problem
from services.intake.web.i18n import LANG_NAMES, LANGS, code, negotiate, region_label, t
from services.intake.web.service import display_name
from services.intake.web.session import (
    CSRF_COOKIE,
    LANG_COOKIE,
    clear_session,
    csrf_valid,
    make_csrf,
    session_cookies,
    session_token,
    token_expiring,
)
from shared.casework import LOCAL_TZ

__all__ = [
    "HOME",
    "checked_form",
    "context",
    "error_page",
    "form",
    "lang_of",
    "page",
    "page_context",
    "plain",
    "redirect",
    "region_names",
    "safe_next",
    "static_router",
    "template_config",
    "uuid_or_404",
]

log = structlog.get_logger("refnet.web")
HERE = Path(__file__).parent
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
PAGE_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CSP}
HOME = {
    "case_manager": "/app/inbox",
    "supervisor": "/app/queue",
    "admin": "/app/dashboard",
    "evaluator": "/app/evaluation",
    # Issue 17: partners (a partner user, or a key) and the agency's intake staff.
    "partner": "/app/partner/referrals",
    "partner_user": "/app/partner/referrals",
    "intake_staff": "/app/referrals/new",
}
NAV = {
    "case_manager": (("/app/inbox", "nav.inbox"),),
    "supervisor": (("/app/queue", "nav.queue"), ("/app/team", "nav.team"), ("/app/map", "nav.map")),
    "admin": (
        ("/app/dashboard", "nav.dashboard"),
        ("/app/queue", "nav.queue"),
        ("/app/roster", "nav.roster"),
        ("/app/partners", "nav.partners"),
        ("/app/staff", "nav.staff"),
        ("/app/map", "nav.map"),
        ("/app/evaluation", "nav.evaluation"),
    ),
    "evaluator": (("/app/evaluation", "nav.evaluation"), ("/app/map", "nav.map")),
}
_FLASH = re.compile(r"^[a-z_]+\.[a-z_]+$")


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(when=_when, day=_day, duration=format_duration, short=_short, left=_left)
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


def _day(value: datetime | str | None) -> str:
    """The local calendar day of a moment (YYYY-MM-DD)."""
    return _when(value)[:10]


def format_duration(seconds: float | None, lang: str = "en") -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 90:
        return t(lang, "seconds", n=f"{seconds:.1f}".rstrip("0").rstrip("."))
    if seconds < 5400:
        return t(lang, "minutes", n=f"{seconds / 60:.1f}".rstrip("0").rstrip("."))
    return t(lang, "hours", n=f"{seconds / 3600:.1f}".rstrip("0").rstrip("."))


def _left(deadline: datetime | str, expired: str) -> str:
    """Time left until ``deadline`` as "3h 59m 12s" (the script keeps it ticking)."""
    if isinstance(deadline, str):
        deadline = datetime.fromisoformat(deadline)
    seconds = int((deadline - datetime.now(UTC)).total_seconds())
    if seconds <= 0:
        return expired
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def _short(value: object) -> str:
    """The first block of a UUID: enough to tell referrals apart on a page, never a name."""
    return str(value).split("-")[0]


def lang_of(request: Request[Any, Any, Any]) -> str:
    return negotiate(request.cookies.get(LANG_COOKIE), request.headers.get("accept-language"))


def _translators(lang: str) -> dict[str, Any]:
    def tr(key: str, **values: object) -> str:
        return t(lang, key, **values)

    def cd(kind: str, value: str | None) -> str:
        return code(lang, kind, value)

    return {"lang": lang, "t": tr, "code": cd, "langs": [(c, LANG_NAMES[c]) for c in LANGS]}


def region_names(request: Request[Any, Any, Any], lang: str) -> dict[str, str]:
    """Region code -> name in ``lang``, for the configured catalogue."""
    return {r.code: region_label(lang, r.code, r.name) for r in request.app.state.regions.regions}


def plain(value: Any) -> Any:
    """What the JSON API would have answered, as Python values: the shape the templates read (defaults
    left out, datetimes as ISO text)."""
    return msgspec.to_builtins(value)


def context(
    request: Request[Any, Any, Any], caller: Caller | None, display_name: str = "", **extra: Any
) -> dict[str, Any]:
    """What every page's template gets: translations, navigation, the form token, a flash message."""
    lang = lang_of(request)
    ctx: dict[str, Any] = {
        **_translators(lang),
        "path": request.url.path,
        "caller": caller,
        "nav": [],
        "display_name": display_name,
        "csrf": "",
        "flash": None,
        "error": None,
        "live": None,
        "refresh": None,
        "region_names": region_names(request, lang),
    }
    msg = request.query_params.get("msg")
    if msg and _FLASH.match(msg) and t(lang, msg) != msg:
        ctx["flash"] = msg
    if caller is not None:
        settings = request.app.state.settings
        nonce = request.cookies.get(CSRF_COOKIE) or ""
        ctx["csrf"] = make_csrf(settings.secret_key, nonce, caller.id) if nonce else ""
        ctx["nav"] = [(href, key) for href, key in NAV.get(caller.role, ())]
    ctx.update(extra)
    return ctx


async def page_context(
    request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, **extra: Any
) -> dict[str, Any]:
    """``context`` for a signed-in person, named in the header as the roster names them."""
    return context(request, caller, await display_name(conn, caller.id), **extra)


def uuid_or_404(value: str) -> str:
    """An id in a page's path: anything else names no page."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Problem(404, "not found") from None


def page(
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
            fresh = refresh_token(settings.secret_key, token, ttl)
            if fresh is not None:
                cookies.extend(session_cookies(request, fresh, ttl, None))
    return Template(
        template_name=template,
        context=dict(ctx),
        status_code=status,
        headers=PAGE_HEADERS,
        cookies=cookies,
        media_type=MediaType.HTML,
    )


def redirect(path: str, **query: str) -> Redirect:
    url = path + ("?" + urllib.parse.urlencode(query) if query else "")
    return Redirect(url, status_code=303, headers={"Cache-Control": "no-store"})


def safe_next(value: str | None) -> str | None:
    """Only a local /app path may be a redirect target (no open redirects)."""
    if not value or not value.startswith("/app") or value.startswith("//") or "\\" in value:
        return None
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme or parsed.netloc:
        return None
    return value


async def form(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The posted form's text fields."""
    data = await request.form()
    return {k: v for k, v in data.items() if isinstance(v, str)}


async def checked_form(request: Request[Any, Any, Any], caller: Caller) -> dict[str, str]:
    """The posted form, after its CSRF token is verified (403 otherwise)."""
    fields = await form(request)
    settings = request.app.state.settings
    if not csrf_valid(settings.secret_key, request.cookies.get(CSRF_COOKIE), caller.id, fields.get("_csrf")):
        raise Problem(403, "csrf")
    return fields


def error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    status = exc.status_code if isinstance(exc, HTTPException | Problem) else 500
    if isinstance(exc, Problem) and exc.slug == "password-change-required":
        return redirect("/app/password", required="1")
    if status == 401:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        had_session = bool(session_token(request))
        # "Your session ended" only to someone who had one: a first visit gets the plain sign-in page.
        query = {"expired": "1"} if had_session else {}
        if request.method == "GET" and safe_next(target) and target not in ("/app", "/app/"):
            query["next"] = target
        resp = redirect("/app/login", **query)
        if had_session:
            clear_session(resp)
        return resp
    if status >= 500:
        log.error("web.unhandled", error=type(exc).__name__, path=request.url.path, exc_info=exc)
    lang = lang_of(request)
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
    return page(request, "error.html", ctx, status=status)


# Built last: the environment's globals are the helpers defined above.
template_config = TemplateConfig(engine=JinjaTemplateEngine.from_environment(_environment()))
