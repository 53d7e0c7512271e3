"""Request context: a request id on every log line and response, security headers, one log line per request."""

from __future__ import annotations

import re
import secrets
import time

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["request_context_middleware", "request_id"]

log = structlog.get_logger("refnet.intake")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def request_id(scope: Scope) -> str:
    """The id this middleware gave the request ("" outside a request)."""
    return str(scope.get("state", {}).get("request_id", ""))


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    """Bind a request id to every log line, add security headers, and log one line per request
    (method, path and status only: bodies and query strings may carry PII)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                headers.extend(_SECURITY_HEADERS)
                message["headers"] = headers
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=rid, trace_id=rid):
            try:
                await app(scope, receive, send_wrapper)
            finally:
                path = scope.get("path", "")
                if path not in ("/healthz", "/readyz"):
                    log.info(
                        "http.request",
                        method=scope.get("method"),
                        path=path,
                        status=status,
                        ms=round((time.perf_counter() - started) * 1000, 2),
                    )

    return middleware
