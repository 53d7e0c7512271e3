"""Delivery counters kept in PostgreSQL (monotonic, shared by every notify process) and their read-out."""

from __future__ import annotations

import random

import asyncpg

__all__ = ["METRICS", "bump", "delivery_counts"]

# attempts: every attempt made; delivered: deliveries that reached their receiver; retried: failed
# attempts that were scheduled again; dead_lettered: deliveries given up on (last attempt, 410, endpoint
# disabled, permanent SMTP refusal); suppressed: not sent because, by its turn (or by notify's handling
# of the withdrawal), consent was withdrawn, the endpoint was deleted or the offer was answered.
METRICS = ("attempts", "delivered", "retried", "dead_lettered", "suppressed")
_SHARDS = 8


async def bump(conn: asyncpg.Connection, channel: str, metric: str, n: int = 1) -> None:
    """Add ``n`` to a counter inside the caller's transaction (a random shard: no single hot row)."""
    if n <= 0:
        return
    await conn.execute(
        "INSERT INTO delivery_counters (channel, metric, shard, value) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (channel, metric, shard) DO UPDATE SET value = delivery_counters.value + excluded.value",
        channel,
        metric,
        random.randrange(_SHARDS),
        n,
    )


async def delivery_counts(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    """Counters and current queue sizes per channel, e.g. for /metrics::

        {"webhook": {"attempts": 9, "delivered": 4, "retried": 5, "dead_lettered": 1, "suppressed": 0,
                     "pending": 2, "dead": 1}, "email": {...}}

    ``pending`` (waiting for a first attempt or a retry) and ``dead`` (in the dead-letter list) are
    gauges; the rest only ever grow.
    """
    out: dict[str, dict[str, int]] = {
        ch: {**dict.fromkeys(METRICS, 0), "pending": 0, "dead": 0} for ch in ("webhook", "email")
    }
    for r in await conn.fetch(
        "SELECT channel, metric, sum(value)::bigint AS value FROM delivery_counters GROUP BY channel, metric"
    ):
        out.setdefault(r["channel"], {})[r["metric"]] = int(r["value"])
    for r in await conn.fetch(
        "SELECT channel, CASE WHEN state = 'dead' THEN 'dead' ELSE 'pending' END AS gauge, count(*) AS n"
        " FROM deliveries WHERE state IN ('pending', 'failed', 'dead') GROUP BY 1, 2"
    ):
        out.setdefault(r["channel"], {})[r["gauge"]] = int(r["n"])
    return out
