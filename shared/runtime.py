"""Process plumbing shared by the services: the NATS link with its outbox relay, and the worker main loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import asyncpg
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from shared import metrics
from shared.bus import PUBLISHES, STREAM, ConsumerSpec, Handler, connect, ensure_stream, run_consumer
from shared.config import Settings
from shared.db import SERVICE_APPLICATION, create_pool, load_sql
from shared.logging import configure_logging
from shared.outbox import OutboxRelay

if TYPE_CHECKING:
    from nats.micro.service import Service

__all__ = ["BusLink", "CommandServer", "run_worker", "settle_heap"]

# Starts a service's NATS command endpoints (shared.commands.serve_command) once the bus is ready.
CommandServer = Callable[[NATS, asyncpg.Pool, Settings], Awaitable["Service"]]

log = structlog.get_logger("refnet.runtime")

# Young collections every 10,000 net allocations instead of 700: a request or message allocates
# hundreds of container objects that die with it; collected 14 times less often, fewer of them are
# still alive (and promoted) when a collection runs. Older generations keep their defaults.
_GC_THRESHOLD = (10_000, 10, 10)


def settle_heap() -> None:
    """For a service process, once its modules are imported: what start-up allocated (some 100,000
    objects: modules, classes, the app) is frozen, so no collection traverses it again, and young
    collections run less often. A full collection of the unfrozen heap cost intake ~40 ms, and the
    collector took ~4% of intake's CPU at 400 referrals/s (py-spy --native, stop 25)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLD)


class BusLink:
    """Connects to NATS in the background (retrying until it can), ensures the stream and consumers,
    and runs this process's outbox relay. Intake keeps accepting referrals while NATS is away."""

    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, name: str, consumers: Sequence[ConsumerSpec] = ()
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._name = name
        self._consumers = tuple(consumers)
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.nc: NATS | None = None
        self.js: JetStreamContext | None = None
        self.relay: OutboxRelay | None = None

    @property
    def connected(self) -> bool:
        return self.nc is not None and self.nc.is_connected

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"bus-{self._name}")

    async def wait_ready(self, stop: asyncio.Event) -> bool:
        waiters = [asyncio.create_task(self._ready.wait()), asyncio.create_task(stop.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
        return self._ready.is_set()

    async def _run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                self.nc = await connect(
                    self._settings.nats_url,
                    self._name,
                    self._settings.nats_user,
                    self._settings.nats_password,
                )
                self.js = self.nc.jetstream(timeout=5)
                await ensure_stream(self.js, self._settings.stream_replicas, self._consumers)
                break
            except Exception as exc:
                log.warning("bus.connect_failed", error=type(exc).__name__, retry_in_s=delay)
                if self.nc is not None:
                    with contextlib.suppress(Exception):
                        await self.nc.close()
                    self.nc = None
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, 5.0)
        if self._stop.is_set() or self.js is None:
            return
        log.info("bus.ready")
        self._ready.set()
        self.relay = OutboxRelay(
            self._pool,
            self.js,
            self._settings.database_url,
            poll_interval=self._settings.outbox_poll_seconds,
            # Only what this service's NATS user may publish; the other services relay the rest.
            subjects=PUBLISHES.get(self._name),
        )
        await self.relay.run(self._stop)

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=10)
        if self.nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.nc.drain(), timeout=5)
            with contextlib.suppress(Exception):
                await self.nc.close()


async def check_database_role(pool: asyncpg.Pool, settings: Settings) -> None:
    """Refuse (production) or warn loudly (development) when row-level security would not apply, or
    when the role can read the server's files or run programs on it (a way around everything else)."""
    row = await pool.fetchrow(load_sql("shared", "role_privileges"))
    bypasses = bool(row and row["bypasses_rls"])
    server_access = list(row["server_access"]) if row else []
    if not bypasses and not server_access:
        return
    if settings.environment == "production":
        if bypasses:
            raise RuntimeError("the database role bypasses row-level security; connect as refnet_app")
        raise RuntimeError(
            f"the database role is a member of {', '.join(server_access)}; connect as refnet_app without it"
        )
    log.warning(
        "db.rls_not_enforced" if bypasses else "db.role_reaches_server",
        server_access=server_access,
        hint="connect as the refnet_app role so row-level security applies",
    )


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _tick(
    job: Callable[[asyncpg.Pool, Settings], Awaitable[object]] | None,
    pool: asyncpg.Pool,
    settings: Settings,
    period_s: float,
    stop: asyncio.Event,
) -> None:
    """Run a periodic job (e.g. offer expiry) independent of message flow, surviving its errors."""
    assert job is not None
    while not stop.is_set():
        try:
            await job(pool, settings)
        except Exception as exc:
            log.warning("periodic.failed", error=type(exc).__name__, detail=str(exc)[:200])
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), period_s)


async def run_worker(
    name: str,
    settings: Settings,
    spec: ConsumerSpec,
    make_handler: Callable[[asyncpg.Pool, Settings], Handler],
    *,
    periodic: Callable[[asyncpg.Pool, Settings], Awaitable[object]] | None = None,
    period_s: float = 5.0,
    stop: asyncio.Event | None = None,
    commands: CommandServer | None = None,
    concurrency: int = 32,
) -> None:
    """Run one consumer service until SIGTERM/SIGINT: pool, NATS link + relay, the consume loop, and
    the service's command endpoints (if any) beside it. ``concurrency``: messages handled at once."""
    configure_logging(settings.log_format, settings.log_level, service=name)
    stop = stop or asyncio.Event()
    _install_signal_handlers(stop)
    pool = await create_pool(
        settings.database_url,
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        application_name=SERVICE_APPLICATION,
    )
    await check_database_role(pool, settings)
    link = BusLink(settings, pool, name, consumers=[spec])
    await link.start()
    log.info("service.started")
    ticker = asyncio.create_task(_tick(periodic, pool, settings, period_s, stop)) if periodic else None
    # Prometheus /metrics on a loopback port (0 = off), with the consumer gauges kept fresh.
    metrics_server = metrics.start_metrics_server(
        metrics.worker_metrics_port(settings, name), settings.metrics_host
    )
    gauges = asyncio.create_task(
        metrics.refresh_worker_gauges(lambda: link.js, STREAM, spec.durable, pool, name, stop)
    )
    command_service: Service | None = None
    try:
        if await link.wait_ready(stop):
            assert link.js is not None
            assert link.nc is not None
            if commands is not None:
                command_service = await commands(link.nc, pool, settings)
            await run_consumer(link.js, spec, make_handler(pool, settings), stop, concurrency=concurrency)
    finally:
        if command_service is not None:
            # First: no new commands; one already running finishes before the pool closes.
            with contextlib.suppress(Exception):
                await command_service.stop()
        for task in (ticker, gauges):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if metrics_server is not None:
            metrics_server.stop()
        # Order matters: the consume loop has finished its in-flight batch (acked after commit)
        # and unsubscribed; now stop the relay and drain NATS, then close the pool.
        await link.stop()
        await pool.close()
        log.info("service.stopped")
