"""The one error path: every failure becomes an RFC 9457 application/problem+json response."""

from __future__ import annotations

import re
from typing import Any, TypeVar

import asyncpg
import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    SerializationException,
    ValidationException,
)

__all__ = [
    "Problem",
    "exception_handlers",
    "field_from_msgspec",
    "invalid_body",
    "malformed_body",
    "problem_response",
    "strict_decode",
]

log = structlog.get_logger("refnet.intake")

T = TypeVar("T")
PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://refnet.dev/problems/"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Validation failed",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}
_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "validation-error",
    429: "rate-limited",
    500: "internal",
    503: "unavailable",
}


class Problem(Exception):
    """A refusal with the status it answers with and a detail safe to show.

    Raised by services as well as controllers (``Problem(409, "offer already answered", ...)``): it is
    not a web framework exception, so the services below the controllers need no web framework.
    """

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, str]] | None = None,
        extra_fields: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        slug: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status_code = status
        self.detail = detail
        self.errors = errors
        self.extra_fields = extra_fields or {}
        self.headers = headers
        self.slug = slug


_RESERVED = frozenset({"type", "title", "status", "detail", "instance", "errors"})


def problem_response(
    request: Request[Any, Any, Any] | None,
    status: int,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    extra_fields: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    slug: str | None = None,
) -> Response[bytes]:
    body: dict[str, Any] = {
        "type": _TYPE_BASE + (slug or _SLUGS.get(status, "error")),
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if request is not None:
        body["instance"] = request.url.path
    if errors:
        body["errors"] = errors
    # Extensions never overwrite the RFC 9457 members (a "status" extension would break clients).
    body.update({k: v for k, v in (extra_fields or {}).items() if k not in _RESERVED})
    return Response(
        content=msgspec.json.encode(body), status_code=status, media_type=PROBLEM_JSON, headers=headers
    )


# Litestar decodes the body as the "data" argument: strip that segment (only when it is a whole one).
_PATH = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?:\.data(?=[.\[`]))?(?P<path>[^`]*)`)?$", re.S)


def field_from_msgspec(message: str) -> dict[str, str]:
    """msgspec's one error as {"field", "message"} (its `$.a.b` path as a dotted field name)."""
    m = _PATH.match(message)
    if not m:
        return {"field": "", "message": message}
    path = (m.group("path") or "").lstrip(".")
    msg = m.group("msg")
    unknown = re.match(r"Object contains unknown field `([^`]+)`", msg)
    missing = re.match(r"Object missing required field `([^`]+)`", msg)
    if unknown:
        path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
    elif missing:
        path = f"{path}.{missing.group(1)}" if path else missing.group(1)
    # Array indices come as `[0]`; keep them readable as needs[0].
    return {"field": path, "message": msg}


def invalid_body(exc: msgspec.DecodeError) -> Problem:
    """The problem for a body our own strict decoder refused: 422 naming the field, or 400 if not JSON."""
    if isinstance(exc, msgspec.ValidationError):
        err = field_from_msgspec(str(exc))
        return Problem(422, f"Invalid request: {err['message']}", errors=[err])
    return malformed_body(exc)


def malformed_body(exc: Exception) -> Problem:
    """The 400 for a body that is not JSON at all (whatever the decoder's reason)."""
    return Problem(400, _not_json_detail(str(exc)), slug="malformed-json")


def strict_decode(raw: bytes, kind: type[T]) -> T:
    """Decode a JSON body exactly as the contract types it ("5" is not 5); a refusal is a Problem."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.DecodeError as exc:
        raise invalid_body(exc) from None


def _not_json_detail(reason: str) -> str:
    # msgspec's untyped decoder reports positions as `$[...]`, which only confuses; keep the reason.
    m = _PATH.match(reason)
    reason = (m.group("msg") if m else reason).removeprefix("JSON is malformed: ")
    if not reason:
        return "The request body is not valid JSON."
    return f"The request body is not valid JSON: {reason}."


def _validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[bytes]:
    cause = exc.__cause__
    if isinstance(cause, msgspec.ValidationError):
        err = field_from_msgspec(str(cause))
        if err["field"] == "data" and err["message"].startswith("Object missing required field"):
            # Litestar names the body `data`: this is an empty body, not a missing field called data.
            return problem_response(request, 400, "A JSON request body is required.", slug="malformed-json")
        return problem_response(request, 422, f"Invalid request: {err['message']}", errors=[err])
    detail = str(exc.detail or "")
    if "malformed" in detail.lower() or "decode" in detail.lower():
        return problem_response(request, 400, "The request body is not valid JSON.", slug="malformed-json")
    errors: list[dict[str, str]] = []
    if isinstance(exc.extra, list):
        for item in exc.extra:
            if isinstance(item, dict):
                errors.append({"field": str(item.get("key", "")), "message": str(item.get("message", ""))})
    if not errors and not detail.startswith("Validation failed"):
        return problem_response(request, 400, detail or "Bad request")
    return problem_response(request, 422, "Invalid request parameters.", errors=errors or None)


def _problem(request: Request[Any, Any, Any], exc: Problem) -> Response[bytes]:
    return problem_response(
        request,
        exc.status_code,
        exc.detail,
        errors=exc.errors,
        extra_fields=exc.extra_fields,
        headers=exc.headers,
        slug=exc.slug,
    )


def _http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    if isinstance(exc.__cause__, SerializationException):
        # Litestar could not decode the body (it wraps msgspec's DecodeError in a 400 ClientException).
        return problem_response(request, 400, _not_json_detail(str(exc.__cause__)), slug="malformed-json")
    headers = dict(exc.headers or {})
    if isinstance(exc, NotAuthorizedException):
        headers.setdefault("WWW-Authenticate", "Bearer")
    status = exc.status_code
    detail = exc.detail if status < 500 else "The server could not complete the request."
    if status == 413:
        detail = "Request bodies are limited to 64 KiB."
    return problem_response(request, status, detail or _TITLES.get(status, "Error"), headers=headers or None)


_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    # A connection killed mid-operation (the server crashed) can leave asyncpg's protocol state
    # inconsistent: "cannot switch to state 15; another operation is in progress". Seen in the fault
    # suite during a PostgreSQL kill -9; nothing was committed, so it is a retryable 503, not a 500.
    asyncpg.InternalClientError,
)


def _unhandled(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, RecursionError) and "deserializing" in str(exc):
        # msgspec gives up on absurdly nested JSON with a RecursionError rather than a DecodeError;
        # that is the client's malformed body, not a server fault.
        return problem_response(request, 400, "The request body is nested too deeply.", slug="malformed-json")
    if isinstance(exc, asyncpg.DataError):
        # Values the database cannot store or compare (a NUL character, a number beyond bigint) come
        # from the client; the transaction rolled back, so nothing was written.
        log.warning("request.unstorable_value", error=type(exc).__name__, path=request.url.path)
        return problem_response(
            request,
            422,
            "The request contains a value that cannot be stored (e.g. a NUL character or an"
            " out-of-range number).",
            slug="validation-error",
        )
    if isinstance(exc, asyncpg.DeadlockDetectedError | asyncpg.SerializationError):
        # Two writers crossed; nothing was committed and the same request will succeed when retried.
        log.warning("request.conflict_retry", error=type(exc).__name__, path=request.url.path)
        return problem_response(
            request, 503, "A concurrent update interfered; retry the request.", headers={"Retry-After": "1"}
        )
    if isinstance(exc, _UNAVAILABLE):
        # The database is unreachable: nothing was written (the transaction never committed).
        log.warning("request.unavailable", error=type(exc).__name__, path=request.url.path)
        return problem_response(
            request,
            503,
            "The service is temporarily unavailable; retry shortly.",
            headers={"Retry-After": "5"},
        )
    # Never echo the exception text to the client; it can hold SQL or values.
    log.error("request.unhandled", error=type(exc).__name__, path=request.url.path, exc_info=exc)
    return problem_response(request, 500, "The server could not complete the request.")


exception_handlers: dict[Any, Any] = {
    Problem: _problem,
    ValidationException: _validation,
    HTTPException: _http,
    Exception: _unhandled,
}
