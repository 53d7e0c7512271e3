"""The dashboard's figures, shared by `GET /v1/admin/metrics`, the dashboard page and the Prometheus gauges.

One read of the database (and JetStream) serves all three. Aggregates only: counts, durations and codes.
Partner and case manager names are the organisations' and staff's own (the roster), never a youth's.
Figures are cached for a few seconds so a room full of dashboards costs one set of queries.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from services.intake.admin.schemas import (
    Bucket,
    CaseManagerLoad,
    ConsumerLag,
    DashboardFigures,
    DeliveryFigures,
    Duration,
    HourPoint,
    Offers,
    Outbox,
    PartnerVolume,
    Utilisation,
)
from shared.bus import CONSUMERS, STREAM
from shared.db import SYSTEM, Identity, load_sql, transaction

__all__ = ["ACCEPTANCE_EDGES", "ASSIGNMENT_EDGES", "WINDOW_DAYS", "Dashboard", "compute", "delivery_counts"]

log = structlog.get_logger("refnet.intake")

# Histogram upper bounds in seconds (the last bucket is everything above the last edge).
ASSIGNMENT_EDGES: tuple[float, ...] = (0.1, 0.5, 1, 5, 30, 60, 300, 900, 3600)
ACCEPTANCE_EDGES: tuple[float, ...] = (60, 300, 900, 1800, 3600, 7200, 14400)
# Durations are measured over referrals of the last WINDOW_DAYS days.
WINDOW_DAYS = 30
CACHE_SECONDS = 5.0

_PKG = "services.intake.admin"
_TOTALS = load_sql(_PKG, "referral_totals")
_PARTNER_NAMES = load_sql(_PKG, "partner_names")
_LAST_24H = load_sql(_PKG, "last_24h")
_TIME_TO_ASSIGNMENT = load_sql(_PKG, "time_to_assignment")
_TIME_TO_ACCEPTANCE = load_sql(_PKG, "time_to_acceptance")
_OPEN_OFFERS = load_sql(_PKG, "open_offers")
_CASE_MANAGER_LOADS = load_sql(_PKG, "case_manager_loads")
_OUTBOX_BACKLOG = load_sql(_PKG, "outbox_backlog")
_DELIVERY_COUNTS = load_sql(_PKG, "delivery_counts")
_BY_STATUS, _BY_REGION, _BY_PARTNER = 0b011, 0b101, 0b110
# notify's counters (they only grow) and queue gauges, per channel; zero until notify counts one.
_DELIVERY_METRICS = ("attempts", "delivered", "retried", "dead_lettered", "suppressed", "pending", "dead")


async def delivery_counts(conn: asyncpg.Connection) -> dict[str, dict[str, int]]:
    """notify's counters and queue sizes per channel: {"webhook": {"attempts": 9, ..., "pending": 2,
    "dead": 1}, "email": {...}}. ``pending`` (waiting for a first attempt or a retry) and ``dead`` (in the
    dead-letter list) are gauges; the rest only ever grow."""
    out: dict[str, dict[str, int]] = {ch: dict.fromkeys(_DELIVERY_METRICS, 0) for ch in ("webhook", "email")}
    for r in await conn.fetch(_DELIVERY_COUNTS):
        out.setdefault(r["channel"], {})[r["metric"]] = int(r["n"])
    return out


def _duration(row: asyncpg.Record, edges: tuple[float, ...]) -> Duration:
    counts = dict(zip(row["buckets"], row["counts"], strict=True))
    # width_bucket gives 0 below the first edge, i for [edge[i-1], edge[i]), len(edges) from the last
    # edge up: bucket i therefore holds the values below edges[i] (and at or above the previous edge).
    histogram = [Bucket(le=edge, count=counts.get(i, 0)) for i, edge in enumerate(edges)]
    histogram.append(Bucket(le=None, count=counts.get(len(edges), 0)))
    return Duration(
        count=row["n"],
        p50_seconds=None if row["p50"] is None else round(float(row["p50"]), 3),
        p90_seconds=None if row["p90"] is None else round(float(row["p90"]), 3),
        histogram=histogram,
    )


async def _consumer_lag(bus: Any) -> list[ConsumerLag]:
    out: list[ConsumerLag] = []
    js = getattr(bus, "js", None)
    for name, spec in CONSUMERS.items():
        pending = ack_pending = redelivered = None
        if js is not None and bus.connected:
            try:
                info = await asyncio.wait_for(js.consumer_info(STREAM, spec.durable), timeout=2)
                pending, ack_pending, redelivered = (
                    int(info.num_pending or 0),
                    int(info.num_ack_pending or 0),
                    int(info.num_redelivered or 0),
                )
            except Exception as exc:
                log.debug("metrics.consumer_info_failed", consumer=name, error=type(exc).__name__)
        out.append(ConsumerLag(name, pending, ack_pending, redelivered))
    return out


async def compute(pool: asyncpg.Pool, identity: Identity, bus: Any) -> DashboardFigures:
    """The figures as ``identity`` (an admin, or the system for the gauges) may see them, uncached;
    ``bus`` None: JetStream is not asked for consumer lag."""
    async with transaction(pool, identity) as conn:
        totals = await conn.fetch(_TOTALS)
        by_status = dict(sorted((r["status"], r["n"]) for r in totals if r["g"] == _BY_STATUS))
        by_region = {
            (region or "out_of_area"): n
            for region, n in sorted(
                ((r["region"], r["n"]) for r in totals if r["g"] == _BY_REGION),
                key=lambda x: (x[0] is None, x[0] or ""),
            )
        }
        by_partner = {r["partner_id"]: r["n"] for r in totals if r["g"] == _BY_PARTNER}
        partners = sorted(
            (
                PartnerVolume(str(r["id"]), r["name"], by_partner.get(r["id"], 0))
                for r in await conn.fetch(_PARTNER_NAMES)
            ),
            key=lambda p: (-p.count, p.name),
        )
        timeline = [
            HourPoint(r["start"], r["received"], r["assigned"], r["unroutable"])
            for r in await conn.fetch(_LAST_24H)
        ]
        tta_row = await conn.fetchrow(_TIME_TO_ASSIGNMENT, list(ASSIGNMENT_EDGES), WINDOW_DAYS)
        ttacc_row = await conn.fetchrow(_TIME_TO_ACCEPTANCE, list(ACCEPTANCE_EDGES), WINDOW_DAYS)
        offers = await conn.fetchrow(_OPEN_OFFERS)
        loads = [
            CaseManagerLoad(
                str(r["staff_id"]),
                r["name"],
                list(r["regions"]),
                r["active_count"],
                r["capacity"],
                r["status"],
            )
            for r in await conn.fetch(_CASE_MANAGER_LOADS)
        ]
        channels = await delivery_counts(conn)
    # Aggregates without GROUP BY always return exactly one row.
    assert tta_row is not None
    assert ttacc_row is not None
    assert offers is not None
    # The outbox is the system's table (no caller reads its rows); its size and age are not personal.
    async with transaction(pool, SYSTEM) as conn:
        box = await conn.fetchrow(_OUTBOX_BACKLOG)
    assert box is not None
    active = sum(c.active for c in loads)
    capacity = sum(c.capacity for c in loads)
    return DashboardFigures(
        generated_at=datetime.now(UTC),
        window_days=WINDOW_DAYS,
        referrals_total=sum(by_status.values()),
        referrals_by_status=by_status,
        referrals_by_region=by_region,
        referrals_by_partner=partners,
        last_24h=timeline,
        time_to_assignment=_duration(tta_row, ASSIGNMENT_EDGES),
        time_to_acceptance=_duration(ttacc_row, ACCEPTANCE_EDGES),
        offers=Offers(open=offers["open"], expiring_within_1h=offers["soon"]),
        utilisation=Utilisation(
            active=active,
            capacity=capacity,
            ratio=round(active / capacity, 4) if capacity else None,
            case_managers=loads,
        ),
        deliveries=DeliveryFigures(
            channels=channels,
            failed=sum(c.get("pending", 0) for c in channels.values()),
            dead=sum(c.get("dead", 0) for c in channels.values()),
        ),
        consumer_lag=await _consumer_lag(bus),
        outbox=Outbox(
            pending=box["n"], oldest_age_seconds=None if box["age"] is None else round(box["age"], 3)
        ),
    )


class Dashboard:
    """The figures for the dashboard page, the admin API and the gauges, at most CACHE_SECONDS old."""

    def __init__(self, pool: asyncpg.Pool, bus: Any) -> None:
        self._pool = pool
        self._bus = bus
        self._cached: tuple[float, DashboardFigures] | None = None

    async def figures(self, identity: Identity = SYSTEM, *, fresh: bool = False) -> DashboardFigures:
        """As ``identity`` (an admin, or the system for the gauges) may see them."""
        hit = self._cached
        if not fresh and hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        figures = await compute(self._pool, identity, self._bus)
        self._cached = (time.monotonic(), figures)
        return figures
