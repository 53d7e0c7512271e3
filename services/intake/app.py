"""Intake app factory: one place wiring settings, lifespan resources, routes, errors and middleware."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from services.intake.admin_deliveries import AdminDeliveriesController
from services.intake.admin_dlq import AdminDeadLettersController
from services.intake.admin_metrics import admin_metrics
from services.intake.admin_routing import ROUTES as ROUTING_ROUTES
from services.intake.admin_security import AdminKeysController
from services.intake.assignments import AssignmentController
from services.intake.cases import CaseController
from services.intake.consent import withdraw_consent
from services.intake.evaluation.controller import EvaluationController
from services.intake.health import healthz, readyz
from services.intake.maintenance import run_maintenance
from services.intake.metrics import IntakeMetrics, metrics_endpoint, metrics_middleware
from services.intake.notifications import NotificationController, NotificationHub
from services.intake.openapi import refine_openapi
from services.intake.pii import break_glass, read_details
from services.intake.problems import exception_handlers
from services.intake.ratelimit import rate_limit_middleware
from services.intake.referrals import ReferralController
from services.intake.staff_auth import token
from services.intake.web.pages import static_router, template_config, web_router
from services.intake.web.session import web_session_middleware
from services.intake.webhooks import WebhookController
from shared.config import Settings, load_settings
from shared.crypto import load_keyring
from shared.db import SERVICE_APPLICATION, create_pool
from shared.logging import configure_logging
from shared.regions import Catalogue
from shared.runtime import BusLink, check_database_role

__all__ = ["create_app"]

log = structlog.get_logger("refnet.intake")

MAX_BODY = 64 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
]


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    """Bind a request id to every log line, add security headers, and log one line per request
    (method, path and status only: bodies and query strings may carry PII)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _REQUEST_ID.match(incoming) else secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.extend(_SECURITY_HEADERS)
                message["headers"] = headers
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id, trace_id=request_id):
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


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or load_settings()

    @asynccontextmanager
    async def resources(app: Litestar) -> AsyncIterator[None]:
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
        app.state.hub = hub
        app.state.bus = bus
        await hub.start()
        await bus.start()
        stop = asyncio.Event()
        maintenance = asyncio.create_task(run_maintenance(pool, settings, stop), name="maintenance")
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(maintenance, timeout=10)
            await hub.stop()
            await bus.stop()
            await pool.close()

    if not settings.secret_key:
        raise ValueError("REFNET_SECRET_KEY is required (refnet up generates one)")
    keyring = load_keyring(settings.pii_keyring_file, settings.pii_master_key, settings.pii_master_key_id)
    regions = Catalogue.load(settings.region_catalogue or None)

    app = Litestar(
        route_handlers=[
            ReferralController,
            AssignmentController,
            NotificationController,
            token,
            healthz,
            readyz,
            withdraw_consent,
            read_details,
            break_glass,
            AdminKeysController,
            WebhookController,
            AdminDeliveriesController,
            AdminDeadLettersController,
            CaseController,
            EvaluationController,
            *ROUTING_ROUTES,
            admin_metrics,
            metrics_endpoint,
            web_router(),
            static_router(),
        ],
        lifespan=[resources],
        state=State(
            {"settings": settings, "keyring": keyring, "regions": regions, "metrics": IntakeMetrics()}
        ),
        exception_handlers=exception_handlers,
        # The web app's session cookie becomes a Bearer credential (under /app only) before the rate
        # limiter keys on it; metrics count every request by route template.
        middleware=[
            request_context_middleware,
            metrics_middleware,
            web_session_middleware,
            rate_limit_middleware(settings.rate_limit_per_minute),
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
