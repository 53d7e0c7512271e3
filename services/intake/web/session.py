"""Browser sessions for the web app: the staff token in an HttpOnly cookie, CSRF tokens, language choice.

The API keeps Bearer auth. For paths under ``/app`` only, ``web_session_middleware`` presents the
session cookie to the existing authentication as ``Authorization: Bearer <token>``, so pages use the
same ``resolve_caller`` and guards as the API (and the rate limiter counts per session, not per
address). Every form post carries a CSRF token: an HMAC of a per-login random nonce (its own
HttpOnly cookie) and the staff id under the server secret, so another site can neither read nor
forge it; SameSite=Strict cookies are the second wall.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

import jwt
from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Empty, Receive, Scope, Send
from litestar.utils.scope.state import ScopeState

__all__ = [
    "CSRF_COOKIE",
    "LANG_COOKIE",
    "SESSION_COOKIE",
    "csrf_valid",
    "login_csrf",
    "make_csrf",
    "session_cookies",
    "session_token",
    "token_expiring",
    "web_session_middleware",
]

SESSION_COOKIE = "refnet_session"
CSRF_COOKIE = "refnet_csrf"
LANG_COOKIE = "refnet_lang"
APP_PREFIX = "/app"


def _cookie_value(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            k, _, v = part.strip().partition("=")
            if k == name and v:
                return v
    return None


def web_session_middleware(app: ASGIApp) -> ASGIApp:
    """Under /app, turn the session cookie into a Bearer credential for the normal authentication."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == ScopeType.HTTP and (path == APP_PREFIX or path.startswith(APP_PREFIX + "/")):
            headers = list(scope["headers"])
            if not any(k == b"authorization" for k, _ in headers):
                token = _cookie_value(headers, SESSION_COOKIE)
                if token and token.isascii():
                    headers.append((b"authorization", b"Bearer " + token.encode()))
                    scope["headers"] = headers
                    # Litestar caches parsed headers in the scope's state (e.g. the CORS middleware
                    # read them already): drop the cache so the new header is seen.
                    ScopeState.from_scope(scope).headers = Empty
        await app(scope, receive, send)

    return middleware


def session_token(request: Request[Any, Any, Any]) -> str | None:
    return request.cookies.get(SESSION_COOKIE) or None


def token_expiring(secret: str, token: str, ttl: int) -> bool:
    """True when a valid session token has less than half its lifetime left (time to slide it)."""
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], issuer="refnet")
    except jwt.PyJWTError:
        return False
    return int(claims.get("exp", 0)) - time.time() < ttl / 2


def make_csrf(secret: str, nonce: str, subject: str) -> str:
    """The form token for a session: bound to its login nonce and the person, keyed by the server."""
    return hmac.new(secret.encode(), f"csrf|{nonce}|{subject}".encode(), hashlib.sha256).hexdigest()


def login_csrf(secret: str, nonce: str) -> str:
    """The sign-in form's token (before there is a person): bound to the browser's nonce cookie."""
    return make_csrf(secret, nonce, "login")


def csrf_valid(secret: str, nonce: str | None, subject: str, submitted: str | None) -> bool:
    if not nonce or not submitted:
        return False
    return hmac.compare_digest(make_csrf(secret, nonce, subject), submitted)


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def is_secure(request: Request[Any, Any, Any]) -> bool:
    """Mark cookies Secure when the page is served over HTTPS (directly or per the configured base URL)."""
    settings = request.app.state.settings
    return request.url.scheme == "https" or str(settings.base_url).startswith("https://")


def _cookie(request: Request[Any, Any, Any], key: str, value: str, max_age: int | None) -> Cookie:
    return Cookie(
        key=key,
        value=value,
        path="/app",
        max_age=max_age,
        httponly=True,
        secure=is_secure(request),
        samesite="strict",
    )


def session_cookies(request: Request[Any, Any, Any], token: str, ttl: int, nonce: str | None) -> list[Cookie]:
    cookies = [_cookie(request, SESSION_COOKIE, token, ttl)]
    if nonce is not None:
        cookies.append(_cookie(request, CSRF_COOKIE, nonce, None))
    return cookies


def clear_session(response: Response[Any]) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/app")
    response.delete_cookie(CSRF_COOKIE, path="/app")


def csrf_cookie(request: Request[Any, Any, Any], nonce: str) -> Cookie:
    return _cookie(request, CSRF_COOKIE, nonce, None)


def lang_cookie(request: Request[Any, Any, Any], lang: str) -> Cookie:
    # Not secret and read by nothing but the server; a year, like any preference.
    return Cookie(
        key=LANG_COOKIE,
        value=lang,
        path="/app",
        max_age=365 * 24 * 3600,
        httponly=True,
        secure=is_secure(request),
        samesite="strict",
    )
