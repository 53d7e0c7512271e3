"""The dashboard's figures: one read of the database (and JetStream) shared by `GET /v1/admin/metrics`,
the admin dashboard page and intake's Prometheus gauges.

Aggregates only: counts, durations and codes. Partner and case manager names are the organisations'
and staff's own (the roster), never a youth's. Figures are cached for a few seconds so a room full of
dashboards costs one set of queries.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import structlog
from litestar import Request, get

from services.intake.auth import require_staff, resolve_caller
from services.notify.metrics import delivery_counts
from shared.bus import CONSUMERS, STREAM
from shared.db import SYSTEM, Identity, transaction

__all__ = [
    "ACCEPTANCE_EDGES",
    "ASSIGNMENT_EDGES",
    "DashboardFigures",
    "admin_metrics",
    "dashboard_figures",
]

log = structlog.get_logger("refnet.intake")

# Histogram upper bounds in seconds (the last bucket is everything above the last edge).
ASSIGNMENT_EDGES: tuple[float, ...] = (0.1, 0.5, 1, 5, 30, 60, 300, 900, 3600)
ACCEPTANCE_EDGES: tuple[float, ...] = (60, 300, 900, 1800, 3600, 7200, 14400)
# Durations are measured over referrals of the last WINDOW_DAYS days.
WINDOW_DAYS = 30
CACHE_SECONDS = 5.0


class Bucket(msgspec.Struct):
    le: float | None  # None: above the last edge
    count: int


class Duration(msgspec.Struct):
    """A duration distribution: sample size, median and 90th percentile in seconds, and a histogram."""

    count: int
    p50_seconds: float | None
    p90_seconds: float | None
    histogram: list[Bucket]


class HourPoint(msgspec.Struct):
    start: datetime
    received: int
    assigned: int
    unroutable: int


class PartnerVolume(msgspec.Struct):
    partner_id: str
    name: str
    count: int


class CaseManagerLoad(msgspec.Struct):
    staff_id: str
    name: str
    regions: list[str]
    active: int
    capacity: int
    status: str


class Utilisation(msgspec.Struct):
    active: int
    capacity: int
    ratio: float | None
    case_managers: list[CaseManagerLoad]


class Offers(msgspec.Struct):
    open: int
    expiring_within_1h: int


class ConsumerLag(msgspec.Struct):
    consumer: str
    pending: int | None  # None when NATS could not be asked
    ack_pending: int | None
    redelivered: int | None


class Outbox(msgspec.Struct):
    pending: int
    oldest_age_seconds: float | None


class DeliveryFigures(msgspec.Struct):
    """Per channel: ``failed`` (waiting for a retry), ``dead`` (dead-lettered), ``pending`` and the
    notify counters (attempts, delivered, retried, dead_lettered, suppressed)."""

    channels: dict[str, dict[str, int]]
    failed: int
    dead: int


class DashboardFigures(msgspec.Struct, kw_only=True):
    generated_at: datetime
    window_days: int
    referrals_total: int
    referrals_by_status: dict[str, int]
    referrals_by_region: dict[str, int]  # "out_of_area" for referrals outside every region
    referrals_by_partner: list[PartnerVolume]
    last_24h: list[HourPoint]
    time_to_assignment: Duration
    time_to_acceptance: Duration
    offers: Offers
    utilisation: Utilisation
    deliveries: DeliveryFigures
    consumer_lag: list[ConsumerLag]
    outbox: Outbox


_DURATION_SQL = """
WITH d AS ({source})
SELECT count(*)::int AS n,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY s) AS p50,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY s) AS p90,
       coalesce((SELECT array_agg(c ORDER BY b) FROM (
            SELECT width_bucket(s, $1::float8[]) AS b, count(*)::int AS c FROM d GROUP BY 1) h), '{{}}') AS counts,
       coalesce((SELECT array_agg(b ORDER BY b) FROM (
            SELECT DISTINCT width_bucket(s, $1::float8[]) AS b FROM d) h), '{{}}') AS buckets
FROM d
"""
# Seconds from receipt to the first offer, and from an offer to its acceptance.
_ASSIGNMENT_SOURCE = (
    "SELECT extract(epoch FROM assigned_at - received_at)::float8 AS s FROM referrals"
    f" WHERE assigned_at IS NOT NULL AND received_at > now() - interval '{WINDOW_DAYS} days'"
)
_ACCEPTANCE_SOURCE = (
    "SELECT extract(epoch FROM responded_at - offered_at)::float8 AS s FROM assignments"
    f" WHERE state = 'accepted' AND responded_at IS NOT NULL AND offered_at > now() - interval '{WINDOW_DAYS} days'"
)

# Referrals by status, by region and by partner in one pass over the table (three GROUP BYs read it
# three times). GROUPING() tells the sets apart: its bits are the columns a row is NOT grouped by.
_TOTALS_SQL = (
    "SELECT GROUPING(status, region, partner_id) AS g, status, region, partner_id, count(*)::int AS n"
    " FROM referrals GROUP BY GROUPING SETS ((status), (region), (partner_id))"
)
_BY_STATUS, _BY_REGION, _BY_PARTNER = 0b011, 0b101, 0b110

_TIMELINE_SQL = """
WITH hours AS (
    SELECT generate_series(date_trunc('hour', now()) - interval '23 hours', date_trunc('hour', now()),
                           interval '1 hour') AS start),
rec AS (SELECT date_trunc('hour', received_at) AS h, count(*)::int AS n FROM referrals
        WHERE received_at >= date_trunc('hour', now()) - interval '23 hours' GROUP BY 1),
asg AS (SELECT date_trunc('hour', offered_at) AS h, count(*)::int AS n FROM assignments
        WHERE offered_at >= date_trunc('hour', now()) - interval '23 hours' GROUP BY 1),
unr AS (SELECT date_trunc('hour', decided_at) AS h, count(*)::int AS n FROM routing_decisions
        WHERE outcome <> 'assigned' AND decided_at >= date_trunc('hour', now()) - interval '23 hours' GROUP BY 1)
SELECT hours.start, coalesce(rec.n, 0) AS received, coalesce(asg.n, 0) AS assigned, coalesce(unr.n, 0) AS unroutable
FROM hours LEFT JOIN rec ON rec.h = hours.start LEFT JOIN asg ON asg.h = hours.start
LEFT JOIN unr ON unr.h = hours.start ORDER BY hours.start
"""


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


async def _compute(pool: asyncpg.Pool, identity: Identity, bus: Any) -> DashboardFigures:
    async with transaction(pool, identity) as conn:
        totals = await conn.fetch(_TOTALS_SQL)
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
                for r in await conn.fetch("SELECT id, name FROM partners")
            ),
            key=lambda p: (-p.count, p.name),
        )
        timeline = [
            HourPoint(r["start"], r["received"], r["assigned"], r["unroutable"])
            for r in await conn.fetch(_TIMELINE_SQL)
        ]
        tta_row = await conn.fetchrow(_DURATION_SQL.format(source=_ASSIGNMENT_SOURCE), list(ASSIGNMENT_EDGES))
        ttacc_row = await conn.fetchrow(
            _DURATION_SQL.format(source=_ACCEPTANCE_SOURCE), list(ACCEPTANCE_EDGES)
        )
        offers = await conn.fetchrow(
            "SELECT count(*)::int AS open,"
            " count(*) FILTER (WHERE respond_by < now() + interval '1 hour')::int AS soon"
            " FROM assignments WHERE state = 'offered'"
        )
        loads = [
            CaseManagerLoad(
                str(r["staff_id"]),
                r["name"],
                list(r["regions"]),
                r["active_count"],
                r["capacity"],
                r["status"],
            )
            for r in await conn.fetch(
                "SELECT c.staff_id, coalesce(nullif(s.display_name, ''), s.email) AS name, c.regions,"
                " c.active_count, c.capacity, c.status FROM case_managers c JOIN staff s ON s.id = c.staff_id"
                " ORDER BY c.regions[1], name"
            )
        ]
        channels = await delivery_counts(conn)
    # Aggregates without GROUP BY always return exactly one row.
    assert tta_row is not None
    assert ttacc_row is not None
    assert offers is not None
    # The outbox is the system's table (no caller reads its rows); its size and age are not personal.
    async with transaction(pool, SYSTEM) as conn:
        box = await conn.fetchrow(
            "SELECT count(*)::int AS n, extract(epoch FROM now() - min(created_at))::float8 AS age FROM outbox"
        )
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


async def dashboard_figures(state: Any, identity: Identity, *, fresh: bool = False) -> DashboardFigures:
    """The figures as ``identity`` (an admin) may see them, at most CACHE_SECONDS old."""
    cache: dict[str, tuple[float, DashboardFigures]] | None = getattr(state, "dashboard_cache", None)
    if cache is None:
        cache = state.dashboard_cache = {}
    hit = cache.get("figures")
    if not fresh and hit is not None and time.monotonic() - hit[0] < CACHE_SECONDS:
        return hit[1]
    figures = await _compute(state.pool, identity, state.bus)
    cache["figures"] = (time.monotonic(), figures)
    return figures


@get(
    "/v1/admin/metrics",
    guards=[require_staff("admin")],
    tags=["admin"],
    summary="Routing and delivery figures for the dashboard (aggregates only)",
    description=(
        "Referrals by status, region and partner; hourly received/assigned/unroutable for the last 24 hours;"
        " p50/p90 time to assignment (receipt to first offer) and to acceptance (offer to acceptance) over"
        f" {WINDOW_DAYS} days with histograms; open offers and those expiring within an hour; case manager"
        " utilisation; delivery failures; JetStream consumer lag and outbox backlog."
    ),
)
async def admin_metrics(request: Request[Any, Any, Any], fresh: bool = False) -> DashboardFigures:
    caller = await resolve_caller(request)
    return await dashboard_figures(request.app.state, caller.identity, fresh=fresh)
