"""Delivery counters kept in PostgreSQL (monotonic, shared by every notify process) and their read-out."""

from __future__ import annotations

import random

import asyncpg

from shared.db import load_sql

__all__ = ["METRICS", "bump", "delivery_counts"]

# attempts: every attempt made; delivered: deliveries that reached their receiver; retried: failed
# attempts that were scheduled again; dead_lettered: deliveries given up on (last attempt, 410, endpoint
# disabled, permanent SMTP refusal); suppressed: not sent because, by its turn (or by notify's handling
# of the withdrawal), consent was withdrawn, the endpoint was deleted or the offer was answered.
# refnet_delivery_counts() (migration 0013) reports the same names.
METRICS = ("attempts", "delivered", "retried", "dead_lettered", "suppressed")
_SHARDS = 8


async def bump(conn: asyncpg.Connection, channel: str, metric: str, n: int = 1) -> None:
    """Add ``n`` to a counter inside the caller's transaction."""
    if n <= 0:
        return
    await conn.execute(load_sql(__package__, "bump_counter"), channel, metric, random.randrange(_SHARDS), n)


async def delivery_counts(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    """Counters and current queue sizes per channel, e.g. for /metrics::

        {"webhook": {"attempts": 9, "delivered": 4, "retried": 5, "dead_lettered": 1, "suppressed": 0,
                     "pending": 2, "dead": 1}, "email": {...}}

    ``pending`` (waiting for a first attempt or a retry) and ``dead`` (in the dead-letter list) are
    gauges; the rest only ever grow. The SQL function refnet_delivery_counts() computes it.
    """
    out: dict[str, dict[str, int]] = {}
    for r in await conn.fetch(load_sql(__package__, "delivery_counts")):
        out.setdefault(r["channel"], {})[r["metric"]] = int(r["n"])
    return out
