"""FHIR R4 endpoints under /fhir/r4 (partners and partner users): application/fhir+json in and out, every
error an OperationOutcome."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
import msgspec
import structlog
from litestar import Request, Response, Router, get, post
from litestar.exceptions import HTTPException
from litestar.params import Parameter

from services.intake.core.auth import Caller, require_partner
from services.intake.core.dependencies import CallerDb
from services.intake.core.middleware import request_id
from services.intake.core.problems import Problem
from services.intake.fhir import service
from shared.youthkey import youth_key_secret

__all__ = ["FHIR_JSON", "fhir_router", "operation_outcome"]

log = structlog.get_logger("refnet.intake")
FHIR_JSON = "application/fhir+json"
# OperationOutcome.issue.code for each HTTP status (the FHIR issue-type value set).
_ISSUE_CODES = {
    400: "structure",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    413: "too-costly",
    415: "not-supported",
    422: "invalid",
    429: "throttled",
}


def _fhir(doc: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(msgspec.json.encode(doc), status_code=status, media_type=FHIR_JSON, headers=headers)


def operation_outcome(status: int, detail: str, errors: list[dict[str, str]] | None) -> dict[str, Any]:
    code = _ISSUE_CODES.get(status, "exception" if status >= 500 else "processing")
    issues: list[dict[str, Any]] = [
        {"severity": "error", "code": code, "diagnostics": e["message"], "expression": [e["field"]]}
        for e in errors or []
        if e.get("field")
    ]
    if not issues:
        issues = [{"severity": "error", "code": code, "diagnostics": detail}]
    return {"resourceType": "OperationOutcome", "issue": issues}


def _outcome(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, Problem):
        return _fhir(operation_outcome(exc.status_code, exc.detail, exc.errors), exc.status_code, exc.headers)
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        detail = "Request bodies are limited to 64 KiB." if exc.status_code == 413 else str(exc.detail)
        return _fhir(operation_outcome(exc.status_code, detail, None), exc.status_code, exc.headers)
    # Never echo an exception's text: it can hold SQL or values.
    log.error("fhir.unhandled", error=type(exc).__name__, path=request.url.path, exc_info=exc)
    return _fhir(operation_outcome(500, "The server could not complete the request.", None), 500)


def _base_url(request: Request[Any, Any, Any]) -> str:
    return str(request.app.state.settings.base_url or request.base_url)


@get("/metadata", summary="CapabilityStatement (FHIR 4.0.1)")
async def metadata(request: Request[Any, Any, Any]) -> Response[bytes]:
    return _fhir(service.capability(_base_url(request)))


@post(
    "/", guards=[require_partner()], summary="A transaction Bundle (Patient, ServiceRequest, Consent, Task)"
)
async def submit_transaction(
    request: Request[Any, Any, Any], caller: Caller, db: CallerDb
) -> Response[bytes]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != FHIR_JSON:
        raise Problem(415, f"Send the Bundle as {FHIR_JSON}.")
    raw = await request.body()
    try:
        doc = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        raise Problem(400, "The request body is not valid JSON.") from None
    state = request.app.state
    answer = await service.submit_bundle(
        db,
        caller,
        doc,
        regions=state.regions,
        keyring=state.pii_keys.ring,
        youth_secret=youth_key_secret(state.settings.youth_key_secret, state.settings.secret_key),
        trace_id=request_id(request.scope),
    )
    return _fhir(answer)


@get("/Task/{task_id:str}", guards=[require_partner()], summary="A referral as its Task")
async def read_task(caller: Caller, conn: asyncpg.Connection, task_id: str) -> Response[bytes]:
    return _fhir(await service.read_task(conn, caller, task_id))


@get("/Task", guards=[require_partner()], summary="Tasks changed since _lastUpdated (searchset)")
async def search_tasks(
    request: Request[Any, Any, Any],
    caller: Caller,
    conn: asyncpg.Connection,
    last_updated: Annotated[str | None, Parameter(query="_lastUpdated", required=False)] = None,
    count: Annotated[int, Parameter(query="_count", ge=1, le=service.MAX_COUNT)] = 100,
) -> Response[bytes]:
    return _fhir(await service.search_tasks(conn, caller, _base_url(request), last_updated, count))


def fhir_router() -> Router:
    """The /fhir/r4 routes (a new Router per app: a router belongs to one application)."""
    return Router(
        path="/fhir/r4",
        route_handlers=[metadata, submit_transaction, read_task, search_tasks],
        exception_handlers={Problem: _outcome, HTTPException: _outcome, Exception: _outcome},
        # Described by its CapabilityStatement (GET /fhir/r4/metadata) and docs/fhir.md, the FHIR way;
        # the OpenAPI document describes refnet's own JSON API.
        include_in_schema=False,
    )
