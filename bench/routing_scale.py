"""`python -m bench.routing_scale`: routing batches by one and two connections at once, set-based against work by work under one lock.

Not a test: it prints a table for people to read. Batches of 64 referrals, each batch one transaction (as
the routing consumer under load), by 1 and by 2 connections at once (standing in for routing processes):
- **serialized**: the former batch, a global advisory lock on BEGIN, then each referral routed by
  `route_referral` one after another;
- **set-based**: `route_batch` (decide all, lock the chosen case managers in staff_id order, take places,
  write the offers in one statement), no lock between batches.
Only the routing section is timed (no NATS, no intake). Connects as the services' role (RLS on).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from bench._scratch import progress_to_stderr, run_main, scratch_database
from bench.routing import _add_case_managers, _new_referrals, _past, _reset, _roster
from services.routing.engine import WALK_PLAN, route_batch, route_referral
from services.routing.rules import load_rules
from shared.db import create_pool, service_dsn, transaction
from shared.logging import configure_logging
from shared.migrate import apply_migrations

__all__ = ["main"]

BATCH = 64
_progress = progress_to_stderr("bench.routing_scale")


async def _routed(pool: asyncpg.Pool, ids: list[uuid.UUID], workers: int, mode: str) -> dict[str, Any]:
    rules = load_rules()
    queue = list(ids)
    busy = deadlocks = 0

    async def worker() -> None:
        nonlocal busy, deadlocks
        while queue:
            chunk = [queue.pop() for _ in range(min(BATCH, len(queue)))]
            while True:
                try:
                    async with transaction(pool, setup=WALK_PLAN) as conn:
                        if mode == "serialized":
                            await conn.execute(
                                "SELECT pg_advisory_xact_lock(hashtext('refnet.routing.decide'))"
                            )
                        refs: list[asyncpg.Record] = []
                        for rid in chunk:
                            ref = await conn.fetchrow("SELECT * FROM referrals WHERE id = $1 FOR UPDATE", rid)
                            assert ref is not None
                            refs.append(ref)
                        if mode == "serialized":
                            for ref in refs:
                                await route_referral(conn, ref, rules)
                        else:
                            await route_batch(conn, [(ref, "") for ref in refs], rules)
                    break
                except asyncpg.LockNotAvailableError:
                    busy += 1  # a later round met another batch's row: the worker goes again
                except asyncpg.DeadlockDetectedError:
                    deadlocks += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    rate = len(ids) / (time.perf_counter() - started)
    return {
        "mode": mode,
        "workers": workers,
        "routed_per_s": round(rate, 1),
        "busy": busy,
        "deadlocks": deadlocks,
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    async with scratch_database(workdir, "bench_routing_scale") as dsn:
        await apply_migrations(dsn)
        roster = _roster(rng, args.case_managers)
        conn = await asyncpg.connect(dsn)
        try:
            await _add_case_managers(conn, roster, 0, args.case_managers)
            youths = await _past(conn, rng, args.past, roster)
            await conn.execute("VACUUM ANALYZE")
            pool = await create_pool(service_dsn(dsn), min_size=2, max_size=4)
            try:
                for rep in range(args.repeat):
                    for mode in ("serialized", "set-based"):
                        for workers in (1, 2):
                            await _reset(conn, roster, args.case_managers)
                            partner = uuid.uuid4()
                            await conn.execute(
                                "INSERT INTO partners (id, name) VALUES ($1, $2)",
                                partner,
                                f"S {rep} {mode} {workers}",
                            )
                            ids = await _new_referrals(conn, rng, args.referrals, youths, partner)
                            await conn.execute("ANALYZE referrals")
                            result = await _routed(pool, ids, workers, mode)
                            result["over_capacity"] = await conn.fetchval(
                                "SELECT count(*) FROM case_managers WHERE active_count > capacity"
                            )
                            _progress(str(result))
                            results.append(result)
            finally:
                await pool.close()
        finally:
            await conn.close()
    return {"benchmark": "routing_scale", "case_managers": args.case_managers, "results": results}


def _table(doc: dict[str, Any]) -> str:
    lines = [
        f"routing batches of {BATCH}, {doc['case_managers']:,} case managers",
        "| batches | connections | referrals/s | NOWAIT retries | deadlocks | over capacity |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in doc["results"]:
        lines.append(
            f"| {r['mode']} | {r['workers']} | {r['routed_per_s']:,.0f} | {r['busy']} | {r['deadlocks']} |"
            f" {r['over_capacity']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.routing_scale", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--case-managers", type=int, default=1_000)
    parser.add_argument("--referrals", type=int, default=1_280, help="routed per measurement (default 1,280)")
    parser.add_argument("--past", type=int, default=5_000, help="past referrals (default 5,000)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (PostgreSQL data)")
    args = parser.parse_args(argv)
    configure_logging("console", "WARNING", service="bench")
    return run_main(args, run, _table, prefix="refnet-bench-routing-scale-", progress=_progress)


if __name__ == "__main__":
    sys.exit(main())
