"""Pipeline latencies read back from the database and the JetStream stream once the load has stopped."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import msgspec
import nats

from bench._replay import BENCH_APP
from shared.bus import STREAM
from shared.events import decode_event

__all__ = ["STAGES", "PipelineStats", "pipeline_stats", "stream_times", "wait_drained"]

# Referrals that should end with a notification but have none yet: still `received`, or routed to
# a case manager whose notification has not been written. Unroutable ones never get one.
_PENDING = """
SELECT count(*) FROM referrals r
WHERE r.status <> 'unroutable'
  AND NOT EXISTS (SELECT 1 FROM notifications n WHERE n.referral_id = r.id)
"""

# First offer only: the benchmark never declines, so there is one per routed referral.
# routing_decisions.decided_at and notifications.created_at default to now(), the start of the
# consumer's transaction, which splits each hop into "waiting to be consumed" and "working".
_LATENCIES = """
WITH r AS MATERIALIZED (
    SELECT id, status, received_at FROM referrals WHERE received_at >= $1 AND received_at < $2
)
SELECT r.id::text AS id, r.status, r.received_at, d.decided_at, a.offered_at, n.created_at AS notified_at
FROM r
LEFT JOIN assignments a ON a.referral_id = r.id AND a.attempt = 1
-- Grouped once, not a subquery per referral: notifications has no index on referral_id (nothing in
-- the services reads it that way), and a lookup per referral scanned the table for each of them
-- (1,800 sequential scans, 1.6 s, after one 6-second step at 300/s).
LEFT JOIN (
    SELECT referral_id, min(decided_at) AS decided_at FROM routing_decisions
    WHERE referral_id IN (SELECT id FROM r) GROUP BY referral_id
) d ON d.referral_id = r.id
LEFT JOIN (
    SELECT referral_id, min(created_at) AS created_at FROM notifications
    WHERE referral_id IN (SELECT id FROM r) GROUP BY referral_id
) n ON n.referral_id = r.id
"""

# The hops of one referral, in order; they add up to received → notified.
STAGES = (
    "intake_to_stream",  # intake commit, outbox relay wake-up, publish to JetStream
    "stream_to_routing",  # waiting for routing to fetch it and start its transaction
    "routing_tx",  # routing's transaction until the offer row (capacity lock included)
    "routing_to_stream",  # routing commit, relay, publish of referral.assigned
    "stream_to_notify",  # waiting for notify to fetch it and start its transaction
)


@dataclass
class PipelineStats:
    referrals: int = 0
    unroutable: int = 0
    not_notified: int = 0
    assign_ms: list[float] = field(default_factory=list)
    notify_ms: list[float] = field(default_factory=list)
    stages_ms: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})


async def wait_drained(dsn: str, limit_s: float) -> tuple[int, float]:
    """Poll until every routable referral has its notification; return (still pending, seconds waited)."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": BENCH_APP})
    started = time.monotonic()
    try:
        while True:
            pending = int(await conn.fetchval(_PENDING))
            waited = time.monotonic() - started
            if pending == 0 or waited >= limit_s:
                return pending, waited
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


async def stream_times(nats_url: str, subjects: tuple[str, ...]) -> dict[tuple[str, str], datetime]:
    """When each (subject, referral id) was stored in the stream, from an ordered replay of it."""
    found: dict[tuple[str, str], datetime] = {}
    nc = await nats.connect(nats_url, name="bench")
    try:
        js = nc.jetstream()
        last = (await js.stream_info(STREAM)).state.last_seq
        if not last:
            return found
        sub = await js.subscribe("refnet.>", stream=STREAM, ordered_consumer=True)
        try:
            while True:
                msg = await sub.next_msg(timeout=5)
                if msg.subject in subjects:
                    with contextlib.suppress(msgspec.DecodeError):
                        rid = str(getattr(decode_event(msg.data), "referral_id", ""))
                        found.setdefault((msg.subject, rid), msg.metadata.timestamp)
                if msg.metadata.sequence.stream >= last:
                    return found
        finally:
            await sub.unsubscribe()
    finally:
        await nc.close()


def _ms(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds() * 1000


async def pipeline_stats(
    dsn: str, window_start: datetime, window_end: datetime, published: dict[tuple[str, str], datetime]
) -> PipelineStats:
    """Latencies of the referrals received in the window, end to end and per hop."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": BENCH_APP})
    try:
        rows = await conn.fetch(_LATENCIES, window_start, window_end)
        not_notified = int(await conn.fetchval(_PENDING))
    finally:
        await conn.close()
    stats = PipelineStats(referrals=len(rows), not_notified=not_notified)
    for row in rows:
        if row["status"] == "unroutable":
            stats.unroutable += 1
        received, decided, offered = row["received_at"], row["decided_at"], row["offered_at"]
        notified = row["notified_at"]
        if offered is not None:
            stats.assign_ms.append((offered - received).total_seconds() * 1000)
        if notified is None:
            continue
        stats.notify_ms.append((notified - received).total_seconds() * 1000)
        in_stream = published.get(("refnet.referral.received", row["id"]))
        assigned = published.get(("refnet.referral.assigned", row["id"]))
        hops = (
            _ms(in_stream, received),
            _ms(decided, in_stream),
            _ms(offered, decided),
            _ms(assigned, offered),
            _ms(notified, assigned),
        )
        if all(h is not None for h in hops):
            for stage, hop in zip(STAGES, hops, strict=True):
                assert hop is not None
                stats.stages_ms[stage].append(hop)
    return stats
