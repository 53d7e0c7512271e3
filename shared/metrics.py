"""Prometheus metrics of the worker processes (routing, notify), and the small metrics HTTP listener every
service serves its metrics on (intake too, with its own registry).

The services' code calls the one-line hooks below; ``run_worker`` starts the listener on the port from
configuration (``REFNET_ROUTING_METRICS_PORT`` / ``REFNET_NOTIFY_METRICS_PORT``, 0 = off; intake's is
``REFNET_METRICS_PORT``) and keeps the JetStream consumer gauges fresh. The listener is apart from the
public API port, so the figures are not served to the internet. Labels are codes only (outcome, channel,
consumer): never an id.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import asyncpg
import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from shared.config import Settings

__all__ = [
    "REGISTRY",
    "MetricsServer",
    "delivery_attempted",
    "offers_declined",
    "offers_expired",
    "refresh_worker_gauges",
    "routing_decided",
    "start_metrics_server",
    "timed_decision",
    "worker_metrics_port",
]

log = structlog.get_logger("refnet.metrics")
P = ParamSpec("P")
T = TypeVar("T")

# One registry per worker process (module state): the hooks are plain function calls.
REGISTRY = CollectorRegistry(auto_describe=True)

ROUTING_DECISION_SECONDS = Histogram(
    "refnet_routing_decision_seconds",
    "Time to decide and record one routing decision (candidates, policy, capacity, offer, outbox).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
    registry=REGISTRY,
)
ROUTING_DECISIONS = Counter(
    "refnet_routing_decisions",
    "Routing decisions by outcome (assigned, out_of_area, no_eligible_case_manager, offers_exhausted).",
    ["outcome"],
    registry=REGISTRY,
)
TIME_TO_ASSIGNMENT = Histogram(
    "refnet_routing_time_to_assignment_seconds",
    "From a referral's receipt to its first offer to a case manager.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
    registry=REGISTRY,
)
OFFERS_DECLINED = Counter(
    "refnet_routing_offers_declined", "Offers declined by case managers.", registry=REGISTRY
)
OFFERS_EXPIRED = Counter(
    "refnet_routing_offers_expired", "Offers that passed their deadline.", registry=REGISTRY
)
CONSUMER_PENDING = Gauge(
    "refnet_jetstream_consumer_pending_messages",
    "Messages in the stream not yet delivered to this process's durable consumer.",
    ["consumer"],
    registry=REGISTRY,
)
CONSUMER_ACK_PENDING = Gauge(
    "refnet_jetstream_consumer_ack_pending_messages",
    "Messages delivered to the durable consumer and not yet acknowledged.",
    ["consumer"],
    registry=REGISTRY,
)
CONSUMER_REDELIVERED = Gauge(
    "refnet_jetstream_consumer_redelivered_messages",
    "Messages the durable consumer has had delivered more than once (still unacknowledged).",
    ["consumer"],
    registry=REGISTRY,
)
DELIVERIES = Counter(
    "refnet_notify_deliveries",
    "Outbound delivery attempts by channel (webhook, email) and outcome (delivered, retry, throttled, dead, gone).",
    ["channel", "outcome"],
    registry=REGISTRY,
)
DELIVERY_QUEUE = Gauge(
    "refnet_notify_delivery_queue",
    "Outbound deliveries by channel and state (pending = waiting for an attempt or a retry, dead).",
    ["channel", "state"],
    registry=REGISTRY,
)


# ---- one-line hooks -------------------------------------------------------------------------------


def timed_decision(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Decorate the routing decision coroutine to time it."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        started = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            ROUTING_DECISION_SECONDS.observe(time.perf_counter() - started)

    return wrapper


def decisions_timed(seconds: float, count: int) -> None:
    """Observe ``count`` routing decisions made together in ``seconds`` (a set-based batch): each its share."""
    for _ in range(count):
        ROUTING_DECISION_SECONDS.observe(seconds / count)


def routing_decided(outcome: str, received_at: datetime | None = None, first_offer: bool = False) -> None:
    """Count a decision; for a referral's first offer also observe the time since it was received."""
    ROUTING_DECISIONS.labels(outcome).inc()
    if first_offer and received_at is not None:
        TIME_TO_ASSIGNMENT.observe(max(0.0, (datetime.now(UTC) - received_at).total_seconds()))


def offers_declined(n: int = 1) -> None:
    OFFERS_DECLINED.inc(n)


def offers_expired(n: int) -> None:
    if n > 0:
        OFFERS_EXPIRED.inc(n)


def delivery_attempted(channel: str, outcome: str) -> None:
    DELIVERIES.labels(channel, outcome).inc()


# ---- the server and the gauges --------------------------------------------------------------------


class MetricsServer:
    """prometheus_client's threaded WSGI server, stoppable."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def worker_metrics_port(settings: Settings, name: str) -> int:
    return {"routing": settings.routing_metrics_port, "notify": settings.notify_metrics_port}.get(name, 0)


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape on stderr."""

    def log_message(self, format: str, *args: object) -> None:
        return None


def _app(registry: CollectorRegistry, before_scrape: Callable[[], None] | None) -> WSGIApplication:
    exposition = make_wsgi_app(registry)
    if before_scrape is None:
        return exposition

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        try:
            before_scrape()
        except Exception as exc:  # stale gauges are better than no metrics at all
            log.warning("metrics.refresh_failed", error=type(exc).__name__)
        return exposition(environ, start_response)

    return app


def start_metrics_server(
    port: int,
    host: str = "127.0.0.1",
    *,
    registry: CollectorRegistry = REGISTRY,
    before_scrape: Callable[[], None] | None = None,
) -> MetricsServer | None:
    """Serve ``registry`` as Prometheus text on ``host:port`` (any path, ``/metrics`` by convention) in a
    thread; ``before_scrape`` runs first on each scrape (in that thread) to refresh gauges. A port in use
    is logged, not fatal (metrics are not the job)."""
    if port <= 0:
        return None

    try:

        class Server(ThreadingWSGIServer):
            # IPv4 or IPv6, whichever the configured host is.
            address_family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

        server = make_server(host, port, _app(registry, before_scrape), Server, handler_class=_QuietHandler)
    except OSError as exc:
        log.warning("metrics.server_failed", port=port, error=exc.strerror or type(exc).__name__)
        return None
    thread = threading.Thread(target=server.serve_forever, name="metrics", daemon=True)
    thread.start()
    log.info("metrics.serving", host=host, port=port)
    return MetricsServer(server, thread)


async def _refresh_once(js: Any, stream: str, durable: str, pool: asyncpg.Pool, name: str) -> None:
    if js is not None:
        with contextlib.suppress(Exception):
            info = await asyncio.wait_for(js.consumer_info(stream, durable), timeout=2)
            CONSUMER_PENDING.labels(durable).set(int(info.num_pending or 0))
            CONSUMER_ACK_PENDING.labels(durable).set(int(info.num_ack_pending or 0))
            CONSUMER_REDELIVERED.labels(durable).set(int(info.num_redelivered or 0))
    if name == "notify":
        # Import here: shared.db has no reason to load for a routing worker's gauges.
        from shared.db import load_sql, transaction

        async with transaction(pool) as conn:
            rows = await conn.fetch(load_sql("shared", "delivery_queue"))
        seen = {(r["channel"], r["metric"]): int(r["n"]) for r in rows}
        for channel in ("webhook", "email"):
            for state in ("pending", "dead"):
                DELIVERY_QUEUE.labels(channel, state).set(seen.get((channel, state), 0))


async def refresh_worker_gauges(
    get_js: Callable[[], Any],
    stream: str,
    durable: str,
    pool: asyncpg.Pool,
    name: str,
    stop: asyncio.Event,
    period_s: float = 5.0,
) -> None:
    """Keep the consumer (and, for notify, delivery queue) gauges fresh until ``stop``."""
    while not stop.is_set():
        try:
            await _refresh_once(get_js(), stream, durable, pool, name)
        except Exception as exc:
            log.debug("metrics.refresh_failed", error=type(exc).__name__)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), period_s)
