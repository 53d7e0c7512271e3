"""Liveness and readiness: /healthz says the process runs, /readyz that PostgreSQL and NATS answer."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Request, Response, get

from services.intake.core.problems import problem_response
from shared.db import load_sql

__all__ = ["healthz", "readyz"]

_PING = load_sql("services.intake.core", "ping")


@get("/healthz", tags=["ops"], summary="Process alive", include_in_schema=True)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", tags=["ops"], summary="Database and NATS reachable")
async def readyz(request: Request[Any, Any, Any]) -> Response[Any]:
    state = request.app.state
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(state.pool.fetchval(_PING), timeout=2)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = type(exc).__name__
    bus = state.bus
    checks["nats"] = "ok" if bus.connected else "disconnected"
    if all(v == "ok" for v in checks.values()):
        return Response({"status": "ready", "checks": checks})
    return problem_response(
        request,
        503,
        "Not ready: " + ", ".join(f"{k}={v}" for k, v in checks.items() if v != "ok"),
        extra_fields={"checks": checks},
        headers={"Retry-After": "5"},
    )
