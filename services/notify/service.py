"""The notify process: the event consumer with its reminder sweep, the replay command endpoint, and the
delivery dispatcher beside them."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog

from services.notify.commands import serve_commands
from services.notify.dispatcher import Dispatcher
from services.notify.reminders import remind_offers
from services.notify.worker import CONSUMER_CONCURRENCY, consumer_spec, make_handler
from shared.config import Settings
from shared.db import SERVICE_APPLICATION, create_pool
from shared.logging import configure_logging
from shared.runtime import run_worker

__all__ = ["serve"]

log = structlog.get_logger("refnet.notify")
# The dispatcher's transactions are short (claim, record); a few connections serve many attempts.
_DISPATCH_POOL = 4


async def _dispatch(pool: asyncpg.Pool, settings: Settings, stop: asyncio.Event) -> None:
    """Keep a dispatcher running for the life of the process: a crash restarts it, loudly."""
    while not stop.is_set():
        try:
            await Dispatcher(pool, settings).run(stop)
        except Exception as exc:
            log.error("dispatcher.crashed", error=type(exc).__name__, detail=str(exc)[:200], exc_info=exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; both halves stop on the same event and finish what is in flight."""
    configure_logging(settings.log_format, settings.log_level, service="notify")
    if not settings.smtp_host:
        log.warning("notify.email_disabled", reason="REFNET_SMTP_HOST is not set; only in-app and webhooks")
    stop = asyncio.Event()
    # Its writes (delivery bookkeeping, dead-letter events) are relayed by this process's relay.
    pool = await create_pool(
        settings.database_url, min_size=1, max_size=_DISPATCH_POOL, application_name=SERVICE_APPLICATION
    )
    dispatching = asyncio.create_task(_dispatch(pool, settings, stop), name="dispatcher")
    try:
        await run_worker(
            "notify",
            settings,
            consumer_spec(),
            make_handler,
            periodic=remind_offers,
            period_s=settings.notify_periodic_seconds,
            stop=stop,
            commands=serve_commands,
            concurrency=CONSUMER_CONCURRENCY,
        )
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await dispatching
        await pool.close()
