"""Intake app factory: the one place wiring settings, lifespan resources, routes, plugins and middleware."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from services.intake.admin.controller import ROUTES as ADMIN_ROUTES
from services.intake.admin.dashboard import Dashboard
from services.intake.cases.controller import ROUTES as CASE_ROUTES
from services.intake.core.auth import api_key_lookup
from services.intake.core.body import StrictBody
from services.intake.core.dependencies import DEPENDENCIES
from services.intake.core.health import healthz, readyz
from services.intake.core.keys import Keys
from services.intake.core.metrics import IntakeMetrics, metrics_middleware, start_metrics_listener
from services.intake.core.middleware import request_context_middleware
from services.intake.core.openapi import refine_openapi
from services.intake.core.problems import exception_handlers
from services.intake.core.ratelimit import rate_limit_middleware
from services.intake.evaluation.controller import EvaluationController
from services.intake.fhir.controller import fhir_router
from services.intake.maintenance import run_maintenance
from services.intake.notifications.controller import NotificationController
from services.intake.notifications.hub import NotificationHub
from services.intake.partners.controller import ROUTES as PARTNER_ROUTES
from services.intake.protocol.controller import ProtocolController
from services.intake.protocol.service import use_protocol
from services.intake.referrals.controller import ReferralController, YouthMatchController
from services.intake.staff.controller import ROUTES as STAFF_ROUTES
from services.intake.web.controller import root_redirect, web_router
from services.intake.web.render import static_router, template_config
from services.intake.web.session import web_session_middleware
from shared import audit
from shared.config import Settings, load_settings
from shared.db import SERVICE_APPLICATION, create_pool
from shared.logging import configure_logging
from shared.regions import Catalogue
from shared.runtime import BusLink, check_database_role

__all__ = ["configured_app", "create_app"]

MAX_BODY = 64 * 1024


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()

    @asynccontextmanager
    async def resources(app: Litestar) -> AsyncIterator[None]:
        if settings.environment == "production":
            audit.load_key(settings, create=True)  # no audit key, no start: the chain must stay keyed
        pool = await create_pool(
            settings.database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            application_name=SERVICE_APPLICATION,
        )
        await check_database_role(pool, settings)
        hub = NotificationHub(settings.database_url)
        bus = BusLink(settings, pool, "intake")
        app.state.pool = pool
        app.state.api_keys = api_key_lookup(pool)
        app.state.hub = hub
        app.state.bus = bus
        app.state.dashboard = Dashboard(pool, bus, regions.codes)
        await hub.start()
        await bus.start()
        # Prometheus metrics on a listener of their own (REFNET_METRICS_PORT), not the public port.
        metrics_server = start_metrics_listener(
            app.state.metrics, app.state.dashboard, settings, asyncio.get_running_loop()
        )
        stop = asyncio.Event()
        maintenance = asyncio.create_task(run_maintenance(pool, settings, stop), name="maintenance")
        try:
            yield
        finally:
            stop.set()
            if metrics_server is not None:
                await asyncio.to_thread(metrics_server.stop)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(maintenance, timeout=10)
            await hub.stop()
            await bus.stop()
            await pool.close()

    if not settings.secret_key:
        raise ValueError("REFNET_SECRET_KEY is required (refnet up generates one)")
    keys = Keys(settings.pii_keyring_file, settings.pii_master_key, settings.pii_master_key_id)
    regions = Catalogue.load(settings.region_catalogue or None)
    use_protocol(settings.protocol_file)

    app = Litestar(
        route_handlers=[
            ReferralController,
            YouthMatchController,
            *CASE_ROUTES,
            NotificationController,
            *STAFF_ROUTES,
            *PARTNER_ROUTES,
            *ADMIN_ROUTES,
            EvaluationController,
            ProtocolController,
            healthz,
            readyz,
            web_router(),
            static_router(),
            fhir_router(),
            root_redirect,
        ],
        lifespan=[resources],
        state=State({"settings": settings, "pii_keys": keys, "regions": regions, "metrics": IntakeMetrics()}),
        # The caller, a transaction under the caller's identity, and (for the few handlers that need
        # several) transactions on demand; request bodies decode strictly into their Structs, once.
        dependencies=DEPENDENCIES,
        dto=StrictBody,
        return_dto=None,
        exception_handlers=exception_handlers,
        # The web app's session cookie becomes a Bearer credential (under /app only) before the rate
        # limiter keys on it; metrics count every request by route template.
        middleware=[
            request_context_middleware,
            metrics_middleware,
            web_session_middleware,
            rate_limit_middleware(settings.rate_limit_per_minute, settings.secret_key),
        ],
        template_config=template_config,
        request_max_body_size=MAX_BODY,
        # Closed by default: no browser origin may call the API unless configured.
        cors_config=CORSConfig(allow_origins=[]),
        openapi_config=OpenAPIConfig(
            title="refnet intake API",
            version="1.0.0",
            description="Referral network for agencies serving exploited youth. See CONTRACT.md.",
            path="/schema",
        ),
        logging_config=None,
        debug=False,
    )
    refine_openapi(app)
    return app


def configured_app() -> Litestar:
    """Entry point for ASGI servers: settings from the environment."""
    settings = load_settings()
    configure_logging(settings.log_format, settings.log_level, service="intake")
    return create_app(settings)
