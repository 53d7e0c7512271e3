"""The dashboard's figures, shared by `GET /v1/admin/metrics`, the dashboard page and the Prometheus gauges.

One read of the database (and JetStream) serves all three. Aggregates only: counts, durations and codes.
Partner and case manager names are the organisations' and staff's own (the roster), never a youth's.
Counts, per-need figures, durations and the timeline cover a time window (the last 24 hours, 7 days, 30
days or all time); offers, utilisation, deliveries and lag are as they are now. Figures are cached for a
few seconds per window so a room full of dashboards costs one set of queries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

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
    NeedFigures,
    Offers,
    Outbox,
    PartnerVolume,
    ProtocolCompliance,
    Utilisation,
    Window,
)
from shared.bus import CONSUMERS, STREAM
from shared.casework import LOCAL_TZ
from shared.codes import NEED_CODES
from shared.db import SYSTEM, Identity, load_sql, transaction

__all__ = [
    "ACCEPTANCE_EDGES",
    "ASSIGNMENT_EDGES",
    "DEFAULT_WINDOW",
    "WINDOWS",
    "Dashboard",
    "compute",
    "delivery_counts",
]

log = structlog.get_logger("refnet.intake")

# Histogram upper bounds in seconds (the last bucket is everything above the last edge).
ASSIGNMENT_EDGES: tuple[float, ...] = (0.1, 0.5, 1, 5, 30, 60, 300, 900, 3600)
ACCEPTANCE_EDGES: tuple[float, ...] = (60, 300, 900, 1800, 3600, 7200, 14400)
# The windows (`?window=`): how far back, and the timeline's bucket. "all" starts at the first referral
# and counts months once that is more than about two months ago.
WINDOWS: dict[str, timedelta | None] = {
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "30d": timedelta(days=30),
    "all": None,
}
DEFAULT_WINDOW: Window = "30d"
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
_BY_NEED = load_sql(_PKG, "by_need")
_TIMELINE = load_sql(_PKG, "timeline")
_FIRST_REFERRAL = load_sql(_PKG, "first_referral")
_PROTOCOL = load_sql(_PKG, "protocol_compliance")
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


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 3)


async def _timeline(
    conn: asyncpg.Connection, window: Window, now: datetime, last_24h: list[HourPoint]
) -> tuple[Literal["hour", "day", "month"], list[HourPoint]]:
    """The window's timeline: hourly over 24 hours, daily over 7 or 30 days, all time by month (by day
    while it spans about two months or less)."""
    if window == "24h":
        return "hour", last_24h
    bucket: Literal["hour", "day", "month"] = "day"
    if window == "all":
        first = await conn.fetchval(_FIRST_REFERRAL)
        since = first or now
        if now - since > timedelta(days=62):
            bucket = "month"
    else:
        days = WINDOWS[window]
        assert days is not None
        since = now - days + timedelta(days=1)  # 7 days: today and the six before
    rows = await conn.fetch(_TIMELINE, since, bucket, LOCAL_TZ.key)
    return bucket, [HourPoint(r["start"], r["received"], r["assigned"], r["unroutable"]) for r in rows]


async def compute(
    pool: asyncpg.Pool,
    identity: Identity,
    bus: Any,
    window: Window = DEFAULT_WINDOW,
    region_codes: Sequence[str] = (),
    *,
    lean: bool = False,
) -> DashboardFigures:
    """The figures over ``window`` as ``identity`` (an admin, or the system for the gauges) may see them,
    uncached; every region in ``region_codes`` and every need code appear, at zero if need be. ``bus``
    None: JetStream is not asked for consumer lag. ``lean`` (the Prometheus gauges): without the
    per-need figures and the window's timeline, which no gauge shows."""
    now = datetime.now(UTC)
    span = WINDOWS[window]
    start = now - span if span is not None else None
    async with transaction(pool, identity) as conn:
        totals = await conn.fetch(_TOTALS, start)
        by_status = dict(sorted((r["status"], r["n"]) for r in totals if r["g"] == _BY_STATUS))
        counted = {(r["region"] or "out_of_area"): r["n"] for r in totals if r["g"] == _BY_REGION}
        # Every region of the catalogue, in its order, then any other counted (a retired region), then
        # referrals outside every region.
        by_region = {code: counted.pop(code, 0) for code in region_codes}
        by_region.update(sorted((k, v) for k, v in counted.items() if k != "out_of_area"))
        by_region["out_of_area"] = counted.get("out_of_area", 0)
        needs = {} if lean else {r["need"]: r for r in await conn.fetch(_BY_NEED, start)}
        by_need = [
            NeedFigures(
                need,
                needs[need]["n"] if need in needs else 0,
                needs[need]["assigned"] if need in needs else 0,
                _seconds(needs[need]["p50"]) if need in needs else None,
                _seconds(needs[need]["p90"]) if need in needs else None,
            )
            for need in (() if lean else NEED_CODES)
        ]
        by_partner = {r["partner_id"]: r["n"] for r in totals if r["g"] == _BY_PARTNER}
        partners = sorted(
            (
                PartnerVolume(str(r["id"]), r["name"], by_partner.get(r["id"], 0))
                for r in await conn.fetch(_PARTNER_NAMES)
            ),
            key=lambda p: (-p.count, p.name),
        )
        last_24h = [
            HourPoint(r["start"], r["received"], r["assigned"], r["unroutable"])
            for r in await conn.fetch(_LAST_24H)
        ]
        bucket, timeline = ("hour", []) if lean else await _timeline(conn, window, now, last_24h)
        tta_row = await conn.fetchrow(_TIME_TO_ASSIGNMENT, list(ASSIGNMENT_EDGES), start)
        ttacc_row = await conn.fetchrow(_TIME_TO_ACCEPTANCE, list(ACCEPTANCE_EDGES), start)
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
        compliance = [
            ProtocolCompliance(
                region=r["region"],
                step=r["code"],
                on_time=r["on_time"],
                late=r["late"],
                open=r["open"],
                overdue=r["overdue"],
            )
            for r in await conn.fetch(_PROTOCOL, start, now)
        ]
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
        generated_at=now,
        window=window,
        window_start=start,
        window_days=span.days if span is not None else None,
        referrals_total=sum(by_status.values()),
        referrals_by_status=by_status,
        referrals_by_region=by_region,
        referrals_by_partner=partners,
        referrals_by_need=by_need,
        timeline_bucket=bucket,
        timeline=timeline,
        last_24h=last_24h,
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
        protocol_compliance=compliance,
    )


class Dashboard:
    """The figures for the dashboard page, the admin API and the gauges, at most CACHE_SECONDS old (per
    window); every region of ``region_codes`` appears, at zero if need be."""

    def __init__(self, pool: asyncpg.Pool, bus: Any, region_codes: Sequence[str] = ()) -> None:
        self._pool = pool
        self._bus = bus
        self._regions = tuple(region_codes)
        self._cached: dict[str, tuple[float, DashboardFigures]] = {}

    async def figures(
        self,
        identity: Identity = SYSTEM,
        *,
        window: Window = DEFAULT_WINDOW,
        fresh: bool = False,
        lean: bool = False,
    ) -> DashboardFigures:
        """As ``identity`` (an admin, or the system for the gauges) may see them; ``lean``: see compute."""
        key = f"{window}{'-lean' if lean else ''}"
        hit = self._cached.get(key)
        if not fresh and hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
            return hit[1]
        figures = await compute(self._pool, identity, self._bus, window, self._regions, lean=lean)
        self._cached[key] = (time.monotonic(), figures)
        return figures
