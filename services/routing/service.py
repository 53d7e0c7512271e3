"""The routing process: the event consumer with its periodic duties, and the manual-assignment command endpoint."""

from __future__ import annotations

from services.routing.commands import serve_commands
from services.routing.worker import CONSUMER_CONCURRENCY, consumer_spec, maintain, make_handler
from shared.config import Settings
from shared.runtime import run_worker

__all__ = ["serve"]


async def serve(settings: Settings) -> None:
    """Run until SIGTERM/SIGINT; several routing processes share the consumer and the commands."""
    await run_worker(
        "routing",
        settings,
        consumer_spec(),
        make_handler,
        periodic=maintain,
        commands=serve_commands,
        concurrency=CONSUMER_CONCURRENCY,
    )
