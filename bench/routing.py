"""`python -m bench.routing`: routing decisions per second and decision latency at 10 / 1,000 / 10,000
case managers, with a million past referrals (and their offers) in the database.

Not a test: it prints a table (and optionally JSON) for people to read. What it measures, per roster size:

- **decision**: what the routing worker does to decide for one locked referral: read its earlier offers,
  select the bounded candidate set in SQL (candidates.sql: hard filters, the policy's exact top list,
  continuity by youth key), score it with the pure policy. Read-only, so every referral sees the same
  roster; one connection, back to back.
- **routing transaction**: the whole of `route_referral` as the worker runs it: lock the referral, decide,
  take capacity, write the offer, decision record and outbox events, commit (fsync on). Sequential, and
  with several connections at once for throughput.

It connects as the services' role (`refnet_app`, row-level security on) with the system identity, as the
routing worker does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import msgspec

from bench._scratch import progress_to_stderr, run_main, scratch_database
from services.routing import engine
from services.routing.engine import decide, facts_for, previous_offers, route_referral
from services.routing.policy import SPECIALISMS
from services.routing.rules import load_rules
from shared.codes import NEED_CODES, REFERRAL_SETTINGS
from shared.db import create_pool, load_sql, service_dsn, transaction
from shared.logging import configure_logging
from shared.migrate import apply_migrations

__all__ = ["main"]

SIZES = (10, 1_000, 10_000)
REGIONS = ("south_la", "san_fernando_valley")
PARTNERS = 9
# Past referrals belong to this many distinct youths: about one in five has been referred before.
YOUTH_SHARE = 0.8
# Past offers name case managers among the first few, so every roster size contains them.
PAST_CASE_MANAGERS = 10


_progress = progress_to_stderr("bench.routing")


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class Roster(msgspec.Struct):
    ids: list[uuid.UUID]
    rows: list[tuple[Any, ...]]


def _roster(rng: random.Random, count: int) -> Roster:
    """Case managers as a mature network has them: mostly one region, varied skills, loads and leave."""
    ids: list[uuid.UUID] = []
    rows: list[tuple[Any, ...]] = []
    for _ in range(count):
        sid = uuid.UUID(int=rng.getrandbits(128), version=4)
        ids.append(sid)
        capacity = rng.randint(5, 25)
        status = rng.choices(("active", "away", "inactive"), (85, 10, 5))[0]
        full = rng.random() < 0.1
        rows.append(
            (
                sid,
                rng.sample(REGIONS, 2) if rng.random() < 0.1 else [rng.choice(REGIONS)],
                rng.sample(NEED_CODES, rng.randint(2, 6)),
                ["en"]
                + (["es"] if rng.random() < 0.4 else [])
                + ([rng.choice(("ko", "hy", "tl", "zh"))] if rng.random() < 0.05 else []),
                capacity,
                capacity if full else rng.randint(0, capacity - 1),
                status,
                date(2099, 1, 1) if status == "away" else None,
                rng.sample(SPECIALISMS, 1) if rng.random() < 0.15 else [],
            )
        )
    return Roster(ids, rows)


_CM_COLUMNS = [
    "staff_id",
    "regions",
    "needs",
    "languages",
    "capacity",
    "active_count",
    "status",
    "away_until",
    "specialisms",
]


async def _add_case_managers(conn: asyncpg.Connection, roster: Roster, start: int, stop: int) -> None:
    staff = [
        (sid, f"cm{i}@bench.invalid", f"Case Manager {i}", "case_manager", "south_la", "!")
        for i, sid in enumerate(roster.ids[start:stop], start)
    ]
    await conn.copy_records_to_table(
        "staff", records=staff, columns=["id", "email", "display_name", "role", "region", "password_hash"]
    )
    await conn.copy_records_to_table("case_managers", records=roster.rows[start:stop], columns=_CM_COLUMNS)


async def _past(
    conn: asyncpg.Connection,
    rng: random.Random,
    count: int,
    roster: Roster,
    *,
    partners: list[uuid.UUID] | None = None,
    progress: Callable[[str], None] = _progress,
) -> list[bytes]:
    """COPY ``count`` closed referrals with accepted offers; return the youth keys they carry.

    They belong to ``partners`` (existing rows), or to PARTNERS new partners when none are given.
    """
    if partners is None:
        partners = [uuid.uuid4() for _ in range(PARTNERS)]
        await conn.copy_records_to_table(
            "partners", records=[(p, f"Partner {i}") for i, p in enumerate(partners)], columns=["id", "name"]
        )
    youths = [rng.randbytes(32) for _ in range(max(1, int(count * YOUTH_SHARE)))]
    start = datetime.now(UTC) - timedelta(days=5 * 365)
    batch = 100_000
    done = 0
    while done < count:
        n = min(batch, count - done)
        refs, offers = [], []
        for _ in range(n):
            rid = uuid.UUID(int=rng.getrandbits(128), version=4)
            received = start + timedelta(seconds=rng.randint(0, 5 * 365 * 86400))
            refs.append(
                (
                    rid,
                    rng.choice(partners),
                    "closed",
                    rng.choice(REGIONS),
                    rng.sample(NEED_CODES, rng.randint(1, 3)),
                    "en",
                    "routine",
                    rng.randint(10, 24),
                    json.dumps({"referral_setting": rng.choice(REFERRAL_SETTINGS)}),
                    received,
                    received,
                    received,
                    received,
                    rng.choice(youths),
                    "goals_met",
                )
            )
            offers.append(
                (
                    uuid.UUID(int=rng.getrandbits(128), version=4),
                    rid,
                    roster.ids[rng.randrange(PAST_CASE_MANAGERS)],
                    "accepted",
                    received,
                    received,
                    received,
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
                "intake",
                "received_at",
                "updated_at",
                "assigned_at",
                "closed_at",
                "youth_key",
                "close_reason",
            ],
        )
        await conn.copy_records_to_table(
            "assignments",
            records=offers,
            columns=[
                "id",
                "referral_id",
                "case_manager_id",
                "state",
                "offered_at",
                "respond_by",
                "responded_at",
            ],
        )
        done += n
        progress(f"  {done:,} past referrals")
    return youths


async def _new_referrals(
    conn: asyncpg.Connection, rng: random.Random, count: int, youths: list[bytes], partner: uuid.UUID
) -> list[uuid.UUID]:
    now = datetime.now(UTC)
    rows, ids = [], []
    for _ in range(count):
        rid = uuid.uuid4()
        ids.append(rid)
        rows.append(
            (
                rid,
                partner,
                "received",
                rng.choice(REGIONS),
                rng.sample(NEED_CODES, rng.randint(1, 3)),
                rng.choices(("en", "es", "ko"), (60, 35, 5))[0],
                "urgent" if rng.random() < 0.1 else "routine",
                rng.randint(10, 24),
                now,
                now,
                rng.choice(youths) if rng.random() < 0.2 else rng.randbytes(32),
            )
        )
    await conn.copy_records_to_table(
        "referrals",
        records=rows,
        columns=[
            "id",
            "partner_id",
            "status",
            "region",
            "needs",
            "language",
            "urgency",
            "age_years",
            "received_at",
            "updated_at",
            "youth_key",
        ],
    )
    return ids


async def _measure_decisions(pool: asyncpg.Pool, ids: list[uuid.UUID]) -> dict[str, Any]:
    rules = load_rules()
    latencies: list[float] = []
    walked: list[int] = []
    outcomes: dict[str, int] = {}
    started = time.perf_counter()
    async with pool.acquire() as proxy:
        # The engine's functions take a Connection; the pool hands out a proxy that behaves as one.
        conn = cast(asyncpg.Connection, proxy)
        for rid in ids:
            async with conn.transaction():
                await conn.execute("SELECT set_config('app.role', 'system', true)")
                ref = await conn.fetchrow("SELECT * FROM referrals WHERE id = $1", rid)
                assert ref is not None
                t0 = time.perf_counter()
                excluded, _ = await previous_offers(conn, rid)
                facts = facts_for(ref, rules, datetime.now(UTC))
                decision, gathered = await decide(conn, facts, excluded, ref["youth_key"], rules)
                latencies.append((time.perf_counter() - t0) * 1000)
            outcomes[decision.outcome] = outcomes.get(decision.outcome, 0) + 1
            walked.append(gathered.walked)
    elapsed = time.perf_counter() - started
    return {
        "decisions": len(ids),
        "decisions_per_s": round(len(ids) / elapsed, 1),
        "p50_ms": round(_pct(latencies, 50), 3),
        "p99_ms": round(_pct(latencies, 99), 3),
        "max_ms": round(max(latencies), 3),
        "rows_walked_p50": _pct([float(w) for w in walked], 50),
        "rows_walked_p99": _pct([float(w) for w in walked], 99),
        "outcomes": outcomes,
    }


async def _measure_routing(pool: asyncpg.Pool, ids: list[uuid.UUID], concurrency: int) -> dict[str, Any]:
    rules = load_rules()
    latencies: list[float] = []
    outcomes: dict[str, int] = {}
    queue = list(ids)

    async def worker() -> None:
        while queue:
            rid = queue.pop()
            t0 = time.perf_counter()
            async with transaction(pool) as conn:
                ref = await conn.fetchrow("SELECT * FROM referrals WHERE id = $1 FOR UPDATE", rid)
                assert ref is not None
                routed = await route_referral(conn, ref, rules)
            latencies.append((time.perf_counter() - t0) * 1000)
            outcomes[routed.status] = outcomes.get(routed.status, 0) + 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return {
        "concurrency": concurrency,
        "routed": len(ids),
        "routed_per_s": round(len(ids) / elapsed, 1),
        "p50_ms": round(_pct(latencies, 50), 3),
        "p99_ms": round(_pct(latencies, 99), 3),
        "outcomes": outcomes,
    }


async def _reset(conn: asyncpg.Connection, roster: Roster, size: int) -> None:
    """Withdraw the previous run's offers and restore every case manager's starting load."""
    await conn.execute("DELETE FROM outbox")
    await conn.execute("UPDATE assignments SET state = 'cancelled' WHERE state = 'offered'")
    await conn.executemany(
        "UPDATE case_managers SET active_count = $2 WHERE staff_id = $1",
        [(r[0], r[5]) for r in roster.rows[:size]],
    )
    await conn.execute("VACUUM ANALYZE case_managers")


async def _plan(pool: asyncpg.Pool) -> list[str]:
    """How the walk is executed, as the service role under row-level security (the point of its design)."""
    async with transaction(pool) as conn:
        await conn.execute(engine.WALK_PLAN)  # as gather() runs it
        rows = await conn.fetch(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) " + load_sql("services.routing", "walk"),
            "south_la",
            "es",
            0,
            [],
            0b11,
            0,
            0,
            64,
        )
    return [r[0].strip() for r in rows if "Scan" in r[0] or "Index Cond" in r[0] or "Limit" in r[0]]


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    async with scratch_database(workdir, "bench_routing") as dsn:
        await apply_migrations(dsn)
        roster = _roster(rng, max(args.sizes))
        conn = await asyncpg.connect(dsn)
        try:
            await _add_case_managers(conn, roster, 0, PAST_CASE_MANAGERS)
            _progress(f"generating {args.past:,} past referrals with COPY ...")
            t0 = time.perf_counter()
            youths = await _past(conn, rng, args.past, roster)
            await conn.execute("VACUUM ANALYZE")
            _progress(f"past referrals ready in {time.perf_counter() - t0:.1f} s")
            results: list[dict[str, Any]] = []
            have = PAST_CASE_MANAGERS
            pool = await create_pool(service_dsn(dsn), min_size=1, max_size=max(2, args.concurrency))
            try:
                for size in sorted(args.sizes):
                    if size > have:
                        await _add_case_managers(conn, roster, have, size)
                        have = size
                    await _reset(conn, roster, size)
                    partner = uuid.uuid4()
                    await conn.execute(
                        "INSERT INTO partners (id, name) VALUES ($1, $2)", partner, f"Bench {size}"
                    )
                    ids = await _new_referrals(conn, rng, args.referrals, youths, partner)
                    await conn.execute("ANALYZE referrals")
                    _progress(f"{size:,} case managers: decisions ...")
                    # Warm the caches and plan caches, then measure.
                    await _measure_decisions(pool, ids[: min(200, len(ids))])
                    decision = await _measure_decisions(pool, ids)
                    _progress(f"{size:,} case managers: routing transactions ...")
                    half = len(ids) // 2
                    sequential = await _measure_routing(pool, ids[:half], 1)
                    concurrent = await _measure_routing(pool, ids[half:], args.concurrency)
                    results.append(
                        {
                            "case_managers": size,
                            "decision": decision,
                            "routing_sequential": sequential,
                            "routing_concurrent": concurrent,
                            "walk_plan": await _plan(pool),
                        }
                    )
            finally:
                await pool.close()
            past = await conn.fetchval("SELECT count(*) FROM referrals WHERE status = 'closed'")
        finally:
            await conn.close()
    return {
        "benchmark": "routing",
        "past_referrals": past,
        "referrals_per_size": args.referrals,
        "rules_version": load_rules().version,
        "machine": {"cpus": os.cpu_count()},
        "results": results,
    }


def _table(doc: dict[str, Any]) -> str:
    lines = [
        f"routing benchmark: {doc['past_referrals']:,} past referrals, {doc['referrals_per_size']:,} new per size",
        "",
        "| case managers | decisions/s | decision p50 ms | decision p99 ms | rows walked p50/p99 |"
        " routed/s (1 conn) | route p99 ms | routed/s (N conn) | route p99 ms (N) | outcomes (routed) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in doc["results"]:
        d, s, c = r["decision"], r["routing_sequential"], r["routing_concurrent"]
        outcomes = {
            k: s["outcomes"].get(k, 0) + c["outcomes"].get(k, 0) for k in {*s["outcomes"], *c["outcomes"]}
        }
        lines.append(
            f"| {r['case_managers']:,} | {d['decisions_per_s']:,} | {d['p50_ms']} | {d['p99_ms']} |"
            f" {d['rows_walked_p50']:.0f}/{d['rows_walked_p99']:.0f} |"
            f" {s['routed_per_s']:,} | {s['p99_ms']} | {c['routed_per_s']:,} | {c['p99_ms']} (N={c['concurrency']}) |"
            f" {', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))} |"
        )
    lines.append("")
    for r in doc["results"]:
        lines.append(f"walk plan at {r['case_managers']:,}: {' / '.join(r['walk_plan'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.routing", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--past", type=int, default=1_000_000, help="past referrals to generate (default 1,000,000)"
    )
    parser.add_argument("--referrals", type=int, default=2_000, help="new referrals routed per roster size")
    parser.add_argument(
        "--sizes", default=",".join(map(str, SIZES)), help="roster sizes (default 10,1000,10000)"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="connections routing at once (default 4)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="100,000 past referrals and 500 new per size")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (PostgreSQL data)")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in str(args.sizes).split(",") if s.strip()]
    if args.quick:
        args.past, args.referrals = min(args.past, 100_000), min(args.referrals, 500)
    configure_logging("console", "WARNING", service="bench")
    return run_main(args, run, _table, prefix="refnet-bench-routing-", progress=_progress)


if __name__ == "__main__":
    sys.exit(main())
