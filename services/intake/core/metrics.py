"""Prometheus metrics for intake: requests by route and status, latency, and gauges read from the database.

Labels carry route templates (``/v1/referrals/{referral_id:str}``), methods, status codes, status and
region codes only: never an id, a name or anything a person typed. Each app has its own registry so
several apps in one process (tests) do not collide. They are served on a listener of their own
(``REFNET_METRICS_PORT``), not on the public API port; ``/metrics`` there answers 404 unless
``REFNET_METRICS_PUBLIC=true``.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder

from shared.codes import REFERRAL_STATUSES
from shared.config import Settings
from shared.db import SYSTEM
from shared.metrics import MetricsServer, start_metrics_server

if TYPE_CHECKING:
    from services.intake.admin.schemas import DashboardFigures

__all__ = ["IntakeMetrics", "exposition", "metrics_middleware", "refresh_gauges", "start_metrics_listener"]

log = structlog.get_logger("refnet.intake")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class IntakeMetrics:
    """The intake process's metric families, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "refnet_http_requests",
            "HTTP requests answered, by route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "refnet_http_request_duration_seconds",
            "Time from receiving a request to starting its response, by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.referrals = Gauge("refnet_referrals", "Referrals by current status.", ["status"], registry=r)
        self.referrals_by_region = Gauge(
            "refnet_referrals_by_region",
            "Referrals by region code (out_of_area: none).",
            ["region"],
            registry=r,
        )
        self.outbox_pending = Gauge(
            "refnet_outbox_pending_events", "Events written to the outbox and not yet published.", registry=r
        )
        self.outbox_age = Gauge(
            "refnet_outbox_oldest_age_seconds",
            "Age of the oldest unpublished outbox event (0 if none).",
            registry=r,
        )
        self.offers_open = Gauge(
            "refnet_offers_open", "Offers waiting for a case manager's answer.", registry=r
        )
        self.offers_expiring = Gauge(
            "refnet_offers_expiring_within_1h",
            "Open offers whose deadline is less than an hour away.",
            registry=r,
        )
        self.utilisation = Gauge(
            "refnet_case_manager_utilisation_ratio",
            "Active cases over total capacity, all case managers.",
            registry=r,
        )
        self.capacity = Gauge("refnet_case_manager_capacity", "Total case manager capacity.", registry=r)
        self.active_cases = Gauge(
            "refnet_case_manager_active_cases", "Offered + accepted cases held.", registry=r
        )
        self.duration_quantiles = Gauge(
            "refnet_referral_duration_quantile_seconds",
            "p50/p90 over all referrals: received to first offer (assignment), offer to acceptance"
            " (the routing histograms give recent ones).",
            ["stage", "quantile"],
            registry=r,
        )
        self.consumer_pending = Gauge(
            "refnet_jetstream_consumer_pending_messages",
            "Messages in the stream not yet delivered to the durable consumer (as seen by intake).",
            ["consumer"],
            registry=r,
        )
        self.delivery_queue = Gauge(
            "refnet_delivery_queue",
            "Outbound deliveries by channel and state (pending, dead).",
            ["channel", "state"],
            registry=r,
        )
        self.protocol_steps = Gauge(
            "refnet_protocol_steps",
            "Child-protection protocol steps of all referrals by region, step and state (on_time, late,"
            " open, overdue): alert on overdue.",
            ["region", "step", "state"],
            registry=r,
        )
        self.scrape_errors = Counter(
            "refnet_metrics_refresh_errors", "Failures reading the database for gauges.", registry=r
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def set_gauges(self, f: DashboardFigures) -> None:
        """Set the gauges from the dashboard figures (the admin dashboard's own, shared with it)."""
        for status in REFERRAL_STATUSES:
            self.referrals.labels(status).set(f.referrals_by_status.get(status, 0))
        for region, n in f.referrals_by_region.items():
            self.referrals_by_region.labels(region).set(n)
        self.outbox_pending.set(f.outbox.pending)
        self.outbox_age.set(f.outbox.oldest_age_seconds or 0.0)
        self.offers_open.set(f.offers.open)
        self.offers_expiring.set(f.offers.expiring_within_1h)
        self.utilisation.set(f.utilisation.ratio or 0.0)
        self.capacity.set(f.utilisation.capacity)
        self.active_cases.set(f.utilisation.active)
        for stage, d in (("assignment", f.time_to_assignment), ("acceptance", f.time_to_acceptance)):
            for q, v in (("0.5", d.p50_seconds), ("0.9", d.p90_seconds)):
                self.duration_quantiles.labels(stage, q).set(v if v is not None else float("nan"))
        for lag in f.consumer_lag:
            if lag.pending is not None:
                self.consumer_pending.labels(lag.consumer).set(lag.pending)
        for channel, figures in f.deliveries.channels.items():
            for state_name in ("pending", "dead"):
                self.delivery_queue.labels(channel, state_name).set(figures.get(state_name, 0))
        for c in f.protocol_compliance:
            for state_name in ("on_time", "late", "open", "overdue"):
                self.protocol_steps.labels(c.region, c.step, state_name).set(getattr(c, state_name))


def metrics_middleware(app: ASGIApp) -> ASGIApp:
    """Count and time every routed HTTP request by its route template (never the concrete path)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        elapsed: float | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status, elapsed
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed = time.perf_counter() - started
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            metrics: IntakeMetrics | None = getattr(scope["app"].state, "metrics", None)
            if metrics is not None:
                route = scope.get("path_template") or "unmatched"
                seconds = elapsed if elapsed is not None else time.perf_counter() - started
                metrics.observe_request(scope.get("method", ""), route, status, seconds)

    return middleware


def exposition(metrics: IntakeMetrics, accept: str) -> tuple[bytes, str]:
    """The registry as Prometheus text 0.0.4 by default, or OpenMetrics when the scraper asks for it."""
    encode, content_type = choose_encoder(accept)
    return encode(metrics.registry), content_type


async def refresh_gauges(metrics: IntakeMetrics, dashboard: Any) -> None:
    """Set the gauges from the dashboard's figures (cached a few seconds, shared with it), read as the
    system; a failure is counted and logged, and the gauges keep their last values."""
    try:
        # Counts by current status over every referral (not a window): what is waiting now.
        metrics.set_gauges(await dashboard.figures(SYSTEM, window="all", lean=True))
    except Exception as exc:
        metrics.scrape_errors.inc()
        log.warning("metrics.refresh_failed", error=type(exc).__name__)


def start_metrics_listener(
    metrics: IntakeMetrics, dashboard: Any, settings: Settings, loop: asyncio.AbstractEventLoop
) -> MetricsServer | None:
    """Serve intake's metrics on ``REFNET_METRICS_PORT`` (0: not at all). Each scrape refreshes the
    gauges on the app's event loop (the listener runs in a thread of its own)."""

    def before_scrape() -> None:
        asyncio.run_coroutine_threadsafe(refresh_gauges(metrics, dashboard), loop).result(timeout=10)

    return start_metrics_server(
        settings.metrics_port, settings.metrics_host, registry=metrics.registry, before_scrape=before_scrape
    )
