"""`refnet healthcheck SERVICE`: an exec probe for containers and compose (the workers have no HTTP port).

intake: its own ``/readyz`` answers 200. routing / notify: the database answers and the service's
durable JetStream consumer exists (so the stream and NATS are there). Exit 0, or 1 with a one-line
reason. Used as the workers' readiness probe; liveness stays "the process runs" (see deploy/README.md).
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import asyncpg
import nats

from shared.bus import STREAM, nats_servers
from shared.config import Settings

__all__ = ["check"]

TIMEOUT_S = 3.0


async def _database(settings: Settings) -> str | None:
    try:
        conn = await asyncpg.connect(settings.database_url, timeout=TIMEOUT_S)
    except Exception as exc:
        return f"database: {type(exc).__name__}"
    try:
        await asyncio.wait_for(conn.fetchval("SELECT 1"), TIMEOUT_S)
    except Exception as exc:
        return f"database: {type(exc).__name__}"
    finally:
        await conn.close(timeout=TIMEOUT_S)
    return None


async def _consumer(settings: Settings, durable: str) -> str | None:
    async def quiet(_exc: Exception) -> None:
        return None

    try:
        nc = await nats.connect(
            servers=nats_servers(settings.nats_url),
            connect_timeout=TIMEOUT_S,
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
            name=f"healthcheck-{durable}",
            **(
                {"user": settings.nats_user, "password": settings.nats_password} if settings.nats_user else {}
            ),
        )
    except Exception as exc:
        return f"nats: {type(exc).__name__}"
    try:
        await nc.jetstream(timeout=TIMEOUT_S).consumer_info(STREAM, durable)
    except Exception as exc:
        return f"consumer {durable}: {type(exc).__name__}"
    finally:
        await nc.close()
    return None


def _intake(settings: Settings) -> str | None:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    url = f"http://{host}:{settings.port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return None if resp.status == 200 else f"readyz {resp.status}"
    except urllib.error.HTTPError as exc:
        return f"readyz {exc.code}"
    except OSError as exc:
        return f"readyz: {type(exc).__name__}"


async def check(settings: Settings, service: str) -> list[str]:
    """Problems found (empty: healthy)."""
    if service == "intake":
        problem = await asyncio.to_thread(_intake, settings)
        return [problem] if problem else []
    results = await asyncio.gather(_database(settings), _consumer(settings, service))
    return [r for r in results if r]
