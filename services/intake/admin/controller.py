"""Administration endpoints: figures and Prometheus gauges, deliveries, dead letters, audit, routing."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import asyncpg
import structlog
from litestar import Controller, Request, Response, get, post
from litestar.params import Parameter

from services.intake.admin import routing, service
from services.intake.admin.dashboard import DEFAULT_WINDOW, Dashboard
from services.intake.admin.schemas import (
    AuditEntry,
    Channel,
    DashboardFigures,
    DeadLetterPage,
    DeadLetterView,
    DeliveryDetail,
    DeliveryPage,
    DeliveryState,
    DeliveryView,
    ManualAssignIn,
    QueuePage,
    RoutingExplanation,
    Window,
)
from services.intake.core.auth import Caller, require_staff
from services.intake.core.dependencies import CallerDb
from services.intake.core.metrics import IntakeMetrics, exposition, refresh_gauges
from services.intake.core.middleware import request_id
from services.intake.core.problems import Problem
from shared.codes import UnroutableReason
from shared.commands import ManualAssignment

__all__ = ["ROUTES"]

log = structlog.get_logger("refnet.intake")


@get(
    "/v1/admin/metrics",
    guards=[require_staff("admin")],
    tags=["admin"],
    summary="Routing and delivery figures for the dashboard (aggregates only)",
    description=(
        "Over `window` (`24h`, `7d`, `30d` (the default) or `all`): referrals received by status, region"
        " (every region, at zero if need be) and partner; per need code the count and p50/p90 time to"
        " assignment; p50/p90 time to assignment (receipt to first offer) and to acceptance (offer to"
        " acceptance) with histograms; a timeline by hour, day or month. As they are now: open offers and"
        " those expiring within an hour; case manager utilisation; delivery failures; JetStream consumer"
        " lag and outbox backlog. `last_24h` is always the last 24 hours, hour by hour. See docs/api.md."
    ),
)
async def admin_metrics(
    request: Request[Any, Any, Any], caller: Caller, window: Window = DEFAULT_WINDOW, fresh: bool = False
) -> DashboardFigures:
    dashboard: Dashboard = request.app.state.dashboard
    return await dashboard.figures(caller.identity, window=window, fresh=fresh)


@get(
    "/metrics",
    tags=["ops"],
    summary="Prometheus metrics (text exposition format), only with REFNET_METRICS_PUBLIC=true",
    description="Metrics are served on their own listener (REFNET_METRICS_PORT); on the public port this"
    " answers 404 unless REFNET_METRICS_PUBLIC=true.",
)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    state = request.app.state
    if not state.settings.metrics_public:
        # Counts by status and region are nobody's business on the internet: the metrics listener has them.
        raise Problem(404, "Not found.")
    metrics: IntakeMetrics = state.metrics
    await refresh_gauges(metrics, state.dashboard)
    body, content_type = exposition(metrics, request.headers.get("accept", ""))
    return Response(content=body, media_type=content_type, headers={"Cache-Control": "no-store"})


class AdminDeliveriesController(Controller):
    path = "/v1/admin/deliveries"
    tags = ["admin"]
    guards = [require_staff("admin")]

    @get("/", summary="Outbound deliveries, newest first (state=dead is the dead-letter list)")
    async def list_(
        self,
        conn: asyncpg.Connection,
        state_filter: Annotated[DeliveryState | None, Parameter(query="state", required=False)] = None,
        channel: Channel | None = None,
        endpoint_id: Annotated[uuid.UUID | None, Parameter(query="endpoint_id", required=False)] = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: str | None = None,
    ) -> DeliveryPage:
        return await service.deliveries(
            conn, state=state_filter, channel=channel, endpoint_id=endpoint_id, limit=limit, cursor=cursor
        )

    @get("/stats", summary="Delivery counters and queue sizes per channel")
    async def stats(self, conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
        return await service.delivery_stats(conn)

    @get("/{delivery_id:str}", summary="One delivery and every attempt made")
    async def read(self, conn: asyncpg.Connection, delivery_id: str) -> DeliveryDetail:
        return await service.delivery(conn, delivery_id)

    @post(
        "/{delivery_id:str}/replay", status_code=202, summary="Send a dead delivery again (same webhook-id)"
    )
    async def replay(
        self, request: Request[Any, Any, Any], caller: Caller, db: CallerDb, delivery_id: str
    ) -> DeliveryView:
        nc = request.app.state.bus.nc
        return await service.replay_delivery(db, caller, nc, delivery_id, request_id(request.scope))


class AdminDeadLettersController(Controller):
    path = "/v1/admin/dead-letters"
    tags = ["admin"]
    guards = [require_staff("admin")]

    @get("/", summary="Bus messages the consumers gave up on, newest first")
    async def list_(
        self,
        conn: asyncpg.Connection,
        consumer: str | None = None,
        limit: Annotated[int, Parameter(ge=1, le=200)] = 50,
        cursor: str | None = None,
    ) -> DeadLetterPage:
        return await service.dead_letters(conn, consumer, limit, cursor)

    @get("/{dead_letter_id:int}", summary="One dead letter")
    async def read(self, conn: asyncpg.Connection, dead_letter_id: int) -> DeadLetterView:
        return await service.dead_letter(conn, dead_letter_id)


@get(
    "/v1/admin/audit",
    guards=[require_staff("admin")],
    tags=["admin"],
    summary="Audit log entries, newest first (ids and codes, no PII)",
)
async def audit_log(
    conn: asyncpg.Connection,
    limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    action: str | None = None,
) -> list[AuditEntry]:
    return await service.audit_log(conn, limit, action)


class RoutingAdminController(Controller):
    path = "/v1/admin"
    tags = ["routing"]
    guards = [require_staff("supervisor", "admin")]

    @get("/queue", summary="Unroutable referrals, most urgent then longest waiting first")
    async def queue(
        self,
        request: Request[Any, Any, Any],
        caller: Caller,
        conn: asyncpg.Connection,
        region: str | None = None,
        reason: UnroutableReason | None = None,
        limit: Annotated[int, Parameter(ge=1, le=500)] = 100,
    ) -> QueuePage:
        return await routing.queue(conn, caller, request.app.state.regions.codes, region, reason, limit)

    @post(
        "/referrals/{referral_id:str}/assign",
        status_code=201,
        summary="Assign a referral by hand (may exceed capacity; the reason is recorded and audited)",
    )
    async def assign(
        self, request: Request[Any, Any, Any], caller: Caller, referral_id: str, data: ManualAssignIn
    ) -> ManualAssignment:
        state = request.app.state
        return await routing.assign(
            state.bus.nc,
            caller,
            referral_id,
            data,
            request_id(request.scope),
            pool=state.pool,
            keys=state.pii_keys,
        )


class RoutingExplanationController(Controller):
    path = "/v1/referrals"
    tags = ["routing"]
    guards = [require_staff("supervisor", "admin")]

    @get("/{referral_id:str}/routing", summary="Why the referral went where it went, in plain words")
    async def explain(
        self, request: Request[Any, Any, Any], caller: Caller, conn: asyncpg.Connection, referral_id: str
    ) -> RoutingExplanation:
        state = request.app.state
        return await routing.explain(
            conn, caller, state.regions, referral_id, pool=state.pool, keys=state.pii_keys
        )


ROUTES: list[Any] = [
    admin_metrics,
    metrics_endpoint,
    AdminDeliveriesController,
    AdminDeadLettersController,
    audit_log,
    RoutingAdminController,
    RoutingExplanationController,
]
