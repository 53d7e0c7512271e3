"""Web sessions: the cookie becomes a Bearer credential under /app only; CSRF tokens; safe redirects."""

from __future__ import annotations

from typing import Any

from services.intake.web.render import safe_next as _safe_next
from services.intake.web.session import csrf_valid, login_csrf, make_csrf, web_session_middleware


async def _seen_headers(path: str, headers: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    seen: dict[bytes, bytes] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(dict(scope["headers"]))

    scope = {"type": "http", "path": path, "headers": headers, "state": {}}
    await web_session_middleware(app)(scope, None, None)  # type: ignore[arg-type]
    return seen


async def test_cookie_becomes_bearer_only_under_app() -> None:
    cookie = [(b"cookie", b"other=1; refnet_session=tok.en.sig")]
    assert (await _seen_headers("/app/inbox", cookie))[b"authorization"] == b"Bearer tok.en.sig"
    assert b"authorization" not in await _seen_headers("/v1/assignments", cookie)
    assert b"authorization" not in await _seen_headers("/application", cookie)
    # An explicit Authorization header is never replaced.
    explicit = [*cookie, (b"authorization", b"Bearer api")]
    assert (await _seen_headers("/app/inbox", explicit))[b"authorization"] == b"Bearer api"


def test_csrf_tokens_bind_nonce_and_person() -> None:
    token = make_csrf("secret", "nonce", "staff-1")
    assert csrf_valid("secret", "nonce", "staff-1", token)
    assert not csrf_valid("secret", "nonce", "staff-2", token)
    assert not csrf_valid("secret", "other", "staff-1", token)
    assert not csrf_valid("other-secret", "nonce", "staff-1", token)
    assert not csrf_valid("secret", None, "staff-1", token)
    assert not csrf_valid("secret", "nonce", "staff-1", None)
    assert csrf_valid("secret", "n", "login", login_csrf("secret", "n"))


def test_only_local_app_paths_are_redirect_targets() -> None:
    assert _safe_next("/app/inbox?x=1") == "/app/inbox?x=1"
    for bad in ("https://evil.example/app", "//evil.example/app", "/v1/referrals", "/app\\..\\x", "", None):
        assert _safe_next(bad) is None
