"""`python -m bench.dashboard`: latency of the administrator and supervisor dashboards' queries as the
database grows (10k / 100k / 1M referrals with 10 / 1,000 / 10,000 case managers by default).

Not a test: it prints a Markdown table (and optionally JSON) for people to read. The statements are the
services' own, run through the services' own code on the services' role (`refnet_app`, row-level security
on) with the identity each endpoint uses:

- `GET /v1/admin/metrics` (also the admin dashboard page): `services.intake.admin.dashboard.compute`, as an
  admin; every statement it runs is timed on its own, and the whole call;
- `GET /v1/admin/queue` (the supervisor queue page asks for 200): `services.intake.admin.routing.queue_rows`, as the
  supervisor of a region and as an admin;
- `GET /v1/admin/case-managers` (the team page): `services.intake.staff.roster.list_profiles`, as an admin and as a
  supervisor;
- `GET /v1/referrals` (first page of 20, and the next page through the cursor):
  `services.intake.referrals.service.visible_referrals`, as a partner, a supervisor and an admin.

A recording stand-in for the pool hands the real connection to that code and times each statement as the
code issues it (asyncpg's prepared statement cache, row decoding and all), so the bench follows the
services' SQL as it changes. The data is generated with COPY by `bench.routing`'s generators (closed past
referrals, each with an accepted offer) plus the live state a dashboard shows: referrals of the last 30
days in every status, open offers, declined and expired offers, the supervisor queue, routing decisions
and email deliveries.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg

from bench._scratch import commit_id, progress_to_stderr, run_main, scratch_database
from bench.routing import PAST_CASE_MANAGERS, REGIONS, Roster, _add_case_managers, _past, _pct, _roster
from services.intake.admin import dashboard as admin_dashboard
from services.intake.admin.routing import queue_rows
from services.intake.core.auth import Caller
from services.intake.referrals.service import visible_referrals
from services.intake.staff import roster as roster_mod
from shared.codes import NEED_CODES
from shared.db import create_pool, service_dsn, transaction
from shared.logging import configure_logging
from shared.migrate import apply_migrations, available_migrations

__all__ = ["main"]

# (referrals, case managers) at each point of the curve.
STEPS = ((10_000, 10), (100_000, 1_000), (1_000_000, 10_000))
QUICK_STEPS = ((1_000, 10), (10_000, 100), (100_000, 1_000))
PARTNERS = 9
# Share of each step's referrals that are live (received in the last 30 days, in every status); the rest
# are bench.routing's closed past referrals, spread over five years.
LIVE_SHARE = 0.02
LIVE_DAYS = 30
# Live statuses and their weights. 'unroutable' ones form the supervisor queue.
LIVE_STATUSES = (
    ("received", 1),
    ("assigned", 15),
    ("accepted", 20),
    ("engaged", 30),
    ("closed", 20),
    ("unroutable", 7),
    ("withdrawn", 2),
)
UNROUTABLE_REASONS = ("out_of_area", "no_eligible_case_manager", "offers_exhausted")
QUEUE_LIMIT = 200  # what the supervisor queue page asks GET /v1/admin/queue for
PAGE = 20  # GET /v1/referrals default limit (the endpoint fetches one more row)
REPEAT, WARMUP = 50, 5
BIG_SCAN = 10_000  # the table lists sequential scans reading at least this many rows
QUICK_REPEAT, QUICK_WARMUP = 20, 5


_progress = progress_to_stderr("bench.dashboard")


# ---- timing the services' own code ---------------------------------------------------------------


@dataclass
class Ran:
    """One statement as the service code issued it: text, arguments, its transaction's BEGIN (which
    carries the caller's identity), wall time in the client and rows returned."""

    sql: str
    args: tuple[Any, ...]
    begin: str
    ms: float
    rows: int


class _RecordingConnection:
    """The real connection, with fetch/fetchrow/fetchval/execute timed and recorded."""

    def __init__(self, conn: Any, log: list[Ran]) -> None:
        self._conn = conn
        self._log = log
        self._begin = ""

    async def _timed(self, method: str, sql: str, args: tuple[Any, ...]) -> Any:
        t0 = time.perf_counter()
        result = await getattr(self._conn, method)(sql, *args)
        ms = (time.perf_counter() - t0) * 1000
        rows = len(result) if method == "fetch" else int(result is not None) if method != "execute" else 0
        self._log.append(Ran(sql, args, self._begin, ms, rows))
        return result

    async def execute(self, sql: str, *args: Any) -> str:
        if sql.startswith("BEGIN"):
            self._begin = sql
        if sql.startswith("BEGIN") or sql in ("COMMIT", "ROLLBACK"):
            return cast(str, await self._conn.execute(sql, *args))
        return cast(str, await self._timed("execute", sql, args))

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return cast(list[asyncpg.Record], await self._timed("fetch", sql, args))

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return cast("asyncpg.Record | None", await self._timed("fetchrow", sql, args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._timed("fetchval", sql, args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


class _RecordingPool:
    """Stands in for the pool `shared.db.transaction()` acquires from."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.log: list[Ran] = []

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[_RecordingConnection]:
        async with self._pool.acquire() as conn:
            yield _RecordingConnection(conn, self.log)


@dataclass
class Case:
    """One endpoint's database work, as ``who``. ``run`` gets a pool and does what the endpoint does."""

    name: str
    who: str
    run: Callable[[asyncpg.Pool], Awaitable[object]]
    labels: dict[str, str] = field(default_factory=dict)  # statement name by a fragment of its text
    label: str = ""  # the name of a statement no fragment names


# Statements of GET /v1/admin/metrics, named by a fragment of their text (others keep their first words).
METRICS_LABELS = {
    "GROUPING SETS": "referrals by status, region and partner",
    "SELECT id, name FROM partners": "partner names",
    "GROUP BY status": "referrals by status",
    "GROUP BY region": "referrals by region",
    "FROM partners p": "referrals by partner",
    "AT TIME ZONE": "timeline by day (30 days)",
    "generate_series": "last 24 h: received / assigned / unroutable",
    "unnest(r.needs)": "per need: count, time to assignment (30 days)",
    "assigned_at - received_at": "time to assignment (30 days)",
    "responded_at - offered_at": "time to acceptance (30 days)",
    "respond_by < now()": "open offers",
    "FROM case_managers c JOIN staff": "utilisation (every case manager)",
    "refnet_delivery_counts": "delivery counters and queue sizes",
    "FROM outbox": "outbox backlog (system)",
}


def _label(sql: str, case: Case) -> str:
    for fragment, label in case.labels.items():
        if fragment in sql:
            return label
    if case.label:
        return case.label
    code = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return " ".join(" ".join(code).split())[:48]


@dataclass
class People:
    admin: Caller
    supervisor: Caller
    partner: Caller


def _cases(people: People, cursor: tuple[datetime, uuid.UUID] | None) -> list[Case]:
    admin, supervisor, partner = people.admin, people.supervisor, people.partner

    async def metrics(pool: asyncpg.Pool) -> object:
        # The figures without the 5 s cache and without NATS (bus=None: consumer lag is not asked).
        return await admin_dashboard.compute(pool, admin.identity, None)

    def queue(caller: Caller, region: str | None) -> Callable[[asyncpg.Pool], Awaitable[object]]:
        async def run(pool: asyncpg.Pool) -> object:
            async with transaction(pool, caller.identity) as conn:
                return await queue_rows(conn, region, None, QUEUE_LIMIT)

        return run

    def profiles(caller: Caller, region: str | None) -> Callable[[asyncpg.Pool], Awaitable[object]]:
        async def run(pool: asyncpg.Pool) -> object:
            async with transaction(pool, caller.identity) as conn:
                return await roster_mod.list_profiles(conn, region, None)

        return run

    def referrals(
        caller: Caller, after: tuple[datetime, uuid.UUID] | None
    ) -> Callable[[asyncpg.Pool], Awaitable[object]]:

        async def run(pool: asyncpg.Pool) -> object:
            async with transaction(pool, caller.identity) as conn:
                return await visible_referrals(conn, caller, after=after, limit=PAGE + 1)

        return run

    cases = [
        Case("GET /v1/admin/metrics", "admin", metrics, METRICS_LABELS),
        Case(
            "GET /v1/admin/queue",
            f"supervisor {supervisor.region}",
            queue(supervisor, supervisor.region),
            label="queue.sql",
        ),
        Case("GET /v1/admin/queue", "admin", queue(admin, None), label="queue.sql"),
        Case("GET /v1/admin/case-managers", "admin", profiles(admin, None), label="roster.list_profiles"),
        Case(
            "GET /v1/admin/case-managers",
            f"supervisor {supervisor.region}",
            profiles(supervisor, supervisor.region),
            label="roster.list_profiles",
        ),
        Case("GET /v1/referrals", "partner", referrals(partner, None), label="visible_referrals.sql"),
    ]
    if cursor is not None:
        cases.append(
            Case(
                "GET /v1/referrals?cursor=",
                "partner, page 2",
                referrals(partner, cursor),
                label="visible_referrals.sql",
            )
        )
    cases += [
        Case(
            "GET /v1/referrals",
            f"supervisor {supervisor.region}",
            referrals(supervisor, None),
            label="visible_referrals.sql",
        ),
        Case("GET /v1/referrals", "admin", referrals(admin, None), label="visible_referrals.sql"),
    ]
    return cases


def _stats(values: Sequence[float]) -> dict[str, float]:
    ms = list(values)
    return {
        "p50_ms": round(_pct(ms, 50), 3),
        "p99_ms": round(_pct(ms, 99), 3),
        "max_ms": round(max(ms), 3),
    }


_GENERIC_PLAN_FN = """
CREATE FUNCTION pg_temp.bench_generic_plan(q text) RETURNS json LANGUAGE plpgsql AS $$
DECLARE plan json;
BEGIN
    EXECUTE 'EXPLAIN (GENERIC_PLAN, FORMAT JSON) ' || q INTO plan;
    RETURN plan;
END $$
"""


async def _plan(pool: asyncpg.Pool, ran: Ran) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of one statement with the arguments and identity it ran with, and the
    generic plan (the one a prepared statement settles on after five executions, when cheaper)."""
    async with pool.acquire() as conn:
        await conn.execute(ran.begin or "BEGIN")
        try:
            doc = await conn.fetchval("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + ran.sql, *ran.args)
            generic: Any = None
            if ran.args:
                # asyncpg cannot send a statement with parameters but no values; plpgsql can.
                await conn.execute(_GENERIC_PLAN_FN)
                generic = await conn.fetchval("SELECT pg_temp.bench_generic_plan($1)", ran.sql)
        finally:
            await conn.execute("ROLLBACK")
    top = _json(doc)[0]
    plan = top["Plan"]
    out: dict[str, Any] = {
        "nodes": _nodes(plan),
        "execution_ms": round(float(top.get("Execution Time", 0.0)), 3),
        "planning_ms": round(float(top.get("Planning Time", 0.0)), 3),
        "shared_hit": int(plan.get("Shared Hit Blocks", 0)),
        "shared_read": int(plan.get("Shared Read Blocks", 0)),
        "seq_scans": _seq_scans(plan),
    }
    if generic is not None:
        out["generic_nodes"] = _nodes(_json(generic)[0]["Plan"], analyzed=False)
    return out


def _json(doc: Any) -> Any:
    return json.loads(doc) if isinstance(doc, str | bytes) else doc


def _nodes(plan: dict[str, Any], depth: int = 0, *, analyzed: bool = True) -> list[str]:
    """The plan's node types, indented by depth: 'Index Scan using referrals_queue on referrals (rows 12)'."""
    label = plan["Node Type"]
    if plan.get("Strategy") in ("Hashed", "Sorted", "Mixed"):
        label = f"{plan['Strategy'].replace('Sorted', 'Group').replace('Hashed', 'Hash')}{label}"
    if plan.get("Scan Direction") == "Backward":
        label += " Backward"
    if plan.get("Index Name"):
        label += f" using {plan['Index Name']}"
    if plan.get("Relation Name"):
        label += f" on {plan['Relation Name']}"
    if analyzed and "Actual Rows" in plan:
        loops = int(plan.get("Actual Loops", 1) or 1)
        rows = float(plan["Actual Rows"]) * loops
        label += f" (rows {rows:,.0f}" + (f", loops {loops:,}" if loops > 1 else "") + ")"
    out = ["  " * depth + label]
    for child in plan.get("Plans", []):
        out += _nodes(child, depth + 1, analyzed=analyzed)
    return out


def _seq_scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every sequential scan in the plan: the table and the rows it read (returned + filtered out)."""
    found = []
    if plan["Node Type"] == "Seq Scan":
        scanned = float(plan.get("Actual Rows", 0)) + float(plan.get("Rows Removed by Filter", 0))
        loops = int(plan.get("Actual Loops", 1) or 1)
        found.append({"table": plan.get("Relation Name"), "rows_read": round(scanned * loops)})
    for child in plan.get("Plans", []):
        found += _seq_scans(child)
    return found


async def _generic_counts(pool: asyncpg.Pool) -> dict[str, tuple[int, int]]:
    """Per statement text: (generic plans, custom plans) the pool's connection has used so far."""
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")
    return {r["statement"]: (r["generic_plans"], r["custom_plans"]) for r in rows}


async def _measure(pool: asyncpg.Pool, case: Case, repeat: int, warmup: int, explain: bool) -> dict[str, Any]:
    recorder = _RecordingPool(pool)
    fake = cast(asyncpg.Pool, recorder)
    before = await _generic_counts(pool)
    for _ in range(warmup):
        recorder.log.clear()
        await case.run(fake)
    totals: list[float] = []
    per: list[list[float]] = []
    shape: list[str] = []
    for _ in range(repeat):
        recorder.log.clear()
        t0 = time.perf_counter()
        await case.run(fake)
        totals.append((time.perf_counter() - t0) * 1000)
        if not per:
            per = [[] for _ in recorder.log]
            shape = [r.sql for r in recorder.log]
        if [r.sql for r in recorder.log] != shape:
            raise RuntimeError(f"{case.name} ran different statements on different calls")
        for i, ran in enumerate(recorder.log):
            per[i].append(ran.ms)
    last = list(recorder.log)
    counts = await _generic_counts(pool)
    statements = []
    for i, ran in enumerate(last):
        # Plans the measured calls (and the warm-up) used: generic, or custom for their arguments.
        now, then = counts.get(ran.sql, (0, 0)), before.get(ran.sql, (0, 0))
        generic, custom = now[0] - then[0], now[1] - then[1]
        entry: dict[str, Any] = {
            "name": _label(ran.sql, case),
            "rows": ran.rows,
            **_stats(per[i]),
            "generic_plans": generic,
            "custom_plans": custom,
            "sql": " ".join(ran.sql.split()),
        }
        if explain:
            entry["plan"] = await _plan(pool, ran)
        statements.append(entry)
    return {"endpoint": case.name, "as": case.who, **_stats(totals), "statements": statements}


# ---- data ----------------------------------------------------------------------------------------


def _uuid(rng: random.Random) -> uuid.UUID:
    return uuid.UUID(int=rng.getrandbits(128), version=4)


async def _live(
    conn: asyncpg.Connection, rng: random.Random, count: int, roster: Roster, partners: list[uuid.UUID]
) -> None:
    """COPY ``count`` referrals of the last LIVE_DAYS days in every status, with their offers (open,
    accepted, declined, expired) and routing decisions, as a running network has them."""
    now = datetime.now(UTC)
    statuses = [s for s, _ in LIVE_STATUSES]
    weights = [w for _, w in LIVE_STATUSES]
    cms = roster.ids
    refs: list[tuple[Any, ...]] = []
    offers: list[tuple[Any, ...]] = []
    decisions: list[tuple[Any, ...]] = []
    detail = json.dumps({"bench": True})
    for _ in range(count):
        rid = _uuid(rng)
        status = rng.choices(statuses, weights)[0]
        received = now - timedelta(seconds=rng.uniform(0, LIVE_DAYS * 86400))
        region: str | None = rng.choice(REGIONS)
        reason = None
        assigned_at = accepted_at = closed_at = queued_at = close_reason = None
        offered = received + timedelta(seconds=rng.uniform(0.05, 5))
        cm = cms[rng.randrange(len(cms))]
        if status == "unroutable":
            reason = rng.choice(UNROUTABLE_REASONS)
            region = None if reason == "out_of_area" else region
            queued_at = received
        # Some referrals were declined or let expire by someone first.
        offered_before = status not in ("received", "unroutable", "withdrawn") and rng.random() < 0.15
        if offered_before or reason == "offers_exhausted":
            first = cms[rng.randrange(len(cms))]
            state = rng.choice(("declined", "expired"))
            offers.append((_uuid(rng), rid, first, state, offered, offered + timedelta(hours=4), offered))
            offered += timedelta(seconds=rng.uniform(60, 4 * 3600))
        if status == "assigned":
            assigned_at = offered
            respond_by = now + timedelta(seconds=rng.uniform(0, 4 * 3600))
            offers.append((_uuid(rng), rid, cm, "offered", offered, respond_by, None))
        elif status in ("accepted", "engaged", "closed"):
            assigned_at = offered
            accepted_at = offered + timedelta(seconds=rng.uniform(60, 3 * 3600))
            accepted_at = min(accepted_at, now)
            offers.append(
                (_uuid(rng), rid, cm, "accepted", offered, offered + timedelta(hours=4), accepted_at)
            )
            if status == "closed":
                closed_at, close_reason = now, "goals_met"
        if status not in ("received", "withdrawn"):
            outcome = reason or "assigned"
            chosen = cm if outcome == "assigned" else None
            decisions.append(
                (_uuid(rng), rid, received + timedelta(milliseconds=20), outcome, chosen, detail)
            )
        refs.append(
            (
                rid,
                rng.choice(partners),
                status,
                region,
                rng.sample(NEED_CODES, rng.randint(1, 3)),
                rng.choices(("en", "es", "ko"), (60, 35, 5))[0],
                "urgent" if rng.random() < 0.1 else "routine",
                rng.randint(10, 24),
                reason,
                received,
                max(received, accepted_at or received),
                assigned_at,
                accepted_at,
                closed_at,
                queued_at,
                close_reason,
                rng.randbytes(32),
            )
        )
    await conn.copy_records_to_table(
        "referrals",
        records=refs,
        columns=[
            "id",
            "partner_id",
            "status",
            "region",
            "needs",
            "language",
            "urgency",
            "age_years",
            "unroutable_reason",
            "received_at",
            "updated_at",
            "assigned_at",
            "accepted_at",
            "closed_at",
            "queued_at",
            "close_reason",
            "youth_key",
        ],
    )
    await conn.copy_records_to_table(
        "assignments",
        records=offers,
        columns=["id", "referral_id", "case_manager_id", "state", "offered_at", "respond_by", "responded_at"],
    )
    await conn.copy_records_to_table(
        "routing_decisions",
        records=decisions,
        columns=["id", "referral_id", "decided_at", "outcome", "chosen_id", "detail"],
    )


# Server-side, for the past referrals bench.routing wrote: the decision that offered each one, and the
# email that told the case manager (a few failed or dead-lettered), as routing and notify would have.
_PAST_DECISIONS = """
INSERT INTO routing_decisions (id, referral_id, decided_at, outcome, chosen_id, detail, policy_version)
SELECT gen_random_uuid(), a.referral_id, a.offered_at, 'assigned', a.case_manager_id,
       jsonb_build_object('outcome', 'assigned', 'chosen', a.case_manager_id, 'region', r.region,
                          'needs', r.needs, 'candidates', 3), 'bench'
FROM assignments a JOIN referrals r ON r.id = a.referral_id
WHERE a.state = 'accepted' AND NOT EXISTS (SELECT 1 FROM routing_decisions d WHERE d.referral_id = a.referral_id)
"""
_DELIVERIES = """
INSERT INTO deliveries (id, event_id, kind, channel, recipient_id, staff_id, referral_id, assignment_id,
                        payload, state, attempts, next_attempt_at, created_at, updated_at, delivered_at)
SELECT gen_random_uuid(), gen_random_uuid(), 'offer', 'email', a.case_manager_id, a.case_manager_id,
       a.referral_id, a.id, jsonb_build_object('assignment_id', a.id, 'referral_id', a.referral_id), s.state,
       1, a.offered_at, a.offered_at, a.offered_at, CASE WHEN s.state = 'delivered' THEN a.offered_at END
FROM assignments a
CROSS JOIN LATERAL (SELECT CASE WHEN random() < 0.001 THEN 'dead' WHEN random() < 0.002 THEN 'failed'
                                ELSE 'delivered' END AS state, a.id AS aid) s
WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.assignment_id = a.id)
"""


async def _grow(
    conn: asyncpg.Connection,
    rng: random.Random,
    roster: Roster,
    partners: list[uuid.UUID],
    have: tuple[int, int],
    want: tuple[int, int],
) -> None:
    referrals, cms = want
    if cms > have[1]:
        await _add_case_managers(conn, roster, max(have[1], PAST_CASE_MANAGERS), cms)
    add = referrals - have[0]
    live = int(add * LIVE_SHARE)
    await _past(conn, rng, add - live, roster, partners=partners, progress=_progress)
    await _live(conn, rng, live, Roster(roster.ids[:cms], roster.rows[:cms]), partners)
    # Bulk history: skip the FK checks and NOTIFY triggers (the rows are consistent by construction).
    await conn.execute("SET session_replication_role = replica")
    try:
        await conn.execute(_PAST_DECISIONS)
        await conn.execute(_DELIVERIES)
    finally:
        await conn.execute("SET session_replication_role = DEFAULT")
    await conn.execute("VACUUM ANALYZE")


async def _people(conn: asyncpg.Connection, partners: list[uuid.UUID]) -> People:
    admin, supervisor = uuid.uuid4(), uuid.uuid4()
    await conn.copy_records_to_table(
        "staff",
        records=[
            (admin, "admin@bench.invalid", "Bench Admin", "admin", None, "!"),
            (supervisor, "supervisor@bench.invalid", "Bench Supervisor", "supervisor", REGIONS[0], "!"),
        ],
        columns=["id", "email", "display_name", "role", "region", "password_hash"],
    )
    return People(
        admin=Caller("staff", str(admin), "admin"),
        supervisor=Caller("staff", str(supervisor), "supervisor", region=REGIONS[0]),
        partner=Caller("partner", str(partners[0]), "partner", partner_id=str(partners[0])),
    )


async def _counts(conn: asyncpg.Connection) -> dict[str, int]:
    out = {}
    for table in ("referrals", "assignments", "routing_decisions", "deliveries", "case_managers"):
        out[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
    out["queue"] = int(await conn.fetchval("SELECT count(*) FROM referrals WHERE status = 'unroutable'"))
    out["open_offers"] = int(await conn.fetchval("SELECT count(*) FROM assignments WHERE state = 'offered'"))
    out["last_30_days"] = int(
        await conn.fetchval("SELECT count(*) FROM referrals WHERE received_at > now() - interval '30 days'")
    )
    return out


async def _cursor(pool: asyncpg.Pool, partner: Caller) -> tuple[datetime, uuid.UUID] | None:
    """The keyset cursor GET /v1/referrals hands the partner with its first page (its last row)."""
    async with transaction(pool, partner.identity) as conn:
        rows = await visible_referrals(conn, partner, limit=PAGE + 1)
    if len(rows) <= PAGE:
        return None
    return rows[PAGE - 1]["received_at"], rows[PAGE - 1]["id"]


def _migrations(workdir: Path, skip: list[int]) -> Path | None:
    if not skip:
        return None
    known = {m.version for m in available_migrations()}
    unknown = set(skip) - known
    if unknown:
        raise SystemExit(f"no migration numbered {', '.join(map(str, sorted(unknown)))}")
    directory = workdir / "migrations"
    directory.mkdir()
    for mig in available_migrations():
        if mig.version not in skip:
            (directory / f"{mig.version:04d}_{mig.name}.sql").write_text(mig.sql)
    return directory


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    steps: list[tuple[int, int]] = args.steps
    async with scratch_database(workdir, "bench_dashboard") as dsn:
        applied = await apply_migrations(dsn, _migrations(workdir, args.skip_migration))
        roster = _roster(rng, max(c for _, c in steps))
        partners = [uuid.uuid4() for _ in range(PARTNERS)]
        results: list[dict[str, Any]] = []
        conn = await asyncpg.connect(dsn)
        # One connection: the statements' plan cache (generic or custom plans) is the one a service
        # connection would build, and pg_prepared_statements reports on it.
        pool = await create_pool(service_dsn(dsn), min_size=1, max_size=1)
        try:
            plan_cache_mode = await pool.fetchval("SHOW plan_cache_mode")
            server = await pool.fetchval("SHOW server_version")
            await conn.copy_records_to_table(
                "partners",
                records=[(p, f"Partner {i}") for i, p in enumerate(partners)],
                columns=["id", "name"],
            )
            await _add_case_managers(conn, roster, 0, PAST_CASE_MANAGERS)
            people = await _people(conn, partners)
            have = (0, PAST_CASE_MANAGERS)
            for i, step in enumerate(steps):
                _progress(f"growing to {step[0]:,} referrals and {step[1]:,} case managers ...")
                t0 = time.perf_counter()
                await _grow(conn, rng, roster, partners, have, step)
                have = step
                tables = await _counts(conn)
                _progress(f"  data ready in {time.perf_counter() - t0:.1f} s: {tables}")
                # A fresh connection per size: no plan cached at the previous size.
                await pool.expire_connections()
                cursor = await _cursor(pool, people.partner)
                measured = []
                for case in _cases(people, cursor):
                    _progress(f"  {case.name} as {case.who} ...")
                    explain = args.explain_all or i == len(steps) - 1
                    measured.append(await _measure(pool, case, args.repeat, args.warmup, explain))
                results.append(
                    {"referrals": step[0], "case_managers": step[1], "tables": tables, "queries": measured}
                )
        finally:
            await pool.close()
            await conn.close()
    return {
        "benchmark": "dashboard",
        "commit": _commit(),
        "migrations": applied,
        "skipped_migrations": args.skip_migration,
        "postgres": server,
        "plan_cache_mode": plan_cache_mode,
        "repeat": args.repeat,
        "warmup": args.warmup,
        "machine": {"cpus": os.cpu_count()},
        "results": results,
    }


def _commit() -> str:
    """HEAD's id, "-dirty" when tracked files differ from it (the run measured uncommitted code)."""
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit_id() + ("-dirty" if dirty else "")


def _size(n: int) -> str:
    return (
        f"{n // 1_000_000}M"
        if n >= 1_000_000 and n % 1_000_000 == 0
        else f"{n // 1000}k"
        if n >= 1000
        else str(n)
    )


def _table(doc: dict[str, Any]) -> str:
    results = doc["results"]
    skipped = doc["skipped_migrations"]
    lines = [
        f"dashboard queries, p50 / p99 ms over {doc['repeat']} calls (after {doc['warmup']} warm-up), "
        f"commit {doc['commit'][:12]}, {doc['machine']['cpus']} CPUs, PostgreSQL {doc['postgres']},"
        f" plan_cache_mode {doc['plan_cache_mode']}"
        + (f", WITHOUT migration(s) {', '.join(map(str, skipped))}" if skipped else ""),
        "",
        "| endpoint (as) | statement | "
        + " | ".join(f"{_size(r['referrals'])} refs / {r['case_managers']:,} CMs" for r in results)
        + " |",
        "|---|---|" + "---:|" * len(results),
    ]
    first = results[0]["queries"]
    for qi, q in enumerate(first):
        cells = [f"{r['queries'][qi]['p50_ms']:.2f} / {r['queries'][qi]['p99_ms']:.2f}" for r in results]
        whole = "**whole call**" if len(q["statements"]) > 1 else q["statements"][0]["name"]
        lines.append(f"| {q['endpoint']} ({q['as']}) | {whole} | " + " | ".join(cells) + " |")
        if len(q["statements"]) > 1:
            for si, s in enumerate(q["statements"]):
                cells = [
                    f"{r['queries'][qi]['statements'][si]['p50_ms']:.2f} / "
                    f"{r['queries'][qi]['statements'][si]['p99_ms']:.2f}"
                    for r in results
                ]
                lines.append(f"| | {s['name']} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "rows: "
        + "; ".join(
            f"{_size(r['referrals'])}: {r['tables']['referrals']:,} referrals, {r['tables']['assignments']:,}"
            f" offers, {r['tables']['last_30_days']:,} in 30 days, {r['tables']['queue']:,} queued,"
            f" {r['tables']['open_offers']:,} open offers"
            for r in results
        )
    )
    last = results[-1]
    scans = [
        f"{q['endpoint']} ({q['as']}) {s['name']}: "
        + ", ".join(f"{x['table']} ({x['rows_read']:,} rows read)" for x in big)
        for q in last["queries"]
        for s in q["statements"]
        if (big := [x for x in s.get("plan", {}).get("seq_scans", []) if x["rows_read"] >= BIG_SCAN])
    ]
    lines.append("")
    lines.append(
        f"sequential scans of {BIG_SCAN:,}+ rows at {_size(last['referrals'])}:" + ("" if scans else " none")
    )
    lines += [f"- {s}" for s in scans]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--steps",
        help="REFERRALS:CASE_MANAGERS,... (default 10000:10,100000:1000,1000000:10000;"
        " with --quick 1000:10,10000:100,100000:1000)",
    )
    parser.add_argument("--repeat", type=int, help=f"measured calls per query (default {REPEAT})")
    parser.add_argument("--warmup", type=int, help=f"unmeasured calls first (default {WARMUP})")
    parser.add_argument("--quick", action="store_true", help="1k/10k/100k referrals, 20 calls per query")
    parser.add_argument(
        "--skip-migration",
        type=int,
        action="append",
        default=[],
        metavar="N",
        help="leave migration N out (to measure before an index it adds); repeatable",
    )
    parser.add_argument(
        "--explain-all", action="store_true", help="EXPLAIN at every size, not only the largest"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="write the results (with EXPLAIN plans) as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (PostgreSQL data)")
    args = parser.parse_args(argv)
    if args.steps:
        args.steps = [tuple(int(x) for x in s.split(":")) for s in args.steps.split(",") if s.strip()]
    else:
        args.steps = list(QUICK_STEPS if args.quick else STEPS)
    if any(len(s) != 2 for s in args.steps) or args.steps != sorted(args.steps):
        parser.error("--steps: REFERRALS:CASE_MANAGERS pairs, growing")
    args.repeat = args.repeat or (QUICK_REPEAT if args.quick else REPEAT)
    args.warmup = WARMUP if args.warmup is None else args.warmup
    configure_logging("console", "WARNING", service="bench")
    return run_main(args, run, _table, prefix="refnet-dashboard-", progress=_progress)


if __name__ == "__main__":
    sys.exit(main())
