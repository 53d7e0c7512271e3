"""`python -m bench.intake_store`: what intake's store statements cost per referral, by batch size, serially.

Not a test: it prints a table for people to read. The end-to-end benchmark runs on a saturated machine,
where a statement's time includes waiting for the CPU; this one stores referrals from one connection,
one transaction after another, so a statement's time is its own. Referrals are the load generator's,
prepared as intake prepares them (sealed, keyed, protocol steps, blind indexes) and spread round-robin
over the demo network's partners; each batch is stored as intake's group commit stores one
(`store_many`: per caller one referral statement and one youth-match statement), a batch of one as a
lone referral (`store_one`). Statement times from pg_stat_statements; connects as the services' role.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from bench._load import make_bodies
from bench._scratch import progress_to_stderr, run_main
from bench._stats import pg_counts
from refnet_dev.demo import seed_demo
from refnet_dev.embedded import EmbeddedPostgres
from services.intake.core.auth import Caller
from services.intake.referrals.schemas import ReferralIn
from services.intake.referrals.service import NewReferral, prepare, store_many, store_one
from shared.crypto import KeyRing
from shared.db import SERVICE_ROLE, SYSTEM, create_pool, service_dsn, transaction
from shared.logging import configure_logging
from shared.migrate import apply_migrations
from shared.regions import Catalogue

__all__ = ["main"]

BATCHES = (1, 8, 64)
_progress = progress_to_stderr("bench.intake_store")
# A throwaway key: the benchmark's PII is generated and its database deleted afterwards.
_KEYRING = KeyRing({"bench": "YmVuY2gtb25seS1rZXktMzItYnl0ZXMtbG9uZy0hISE="}, "bench")
_YOUTH_SECRET = b"bench-only youth secret, 32 byte"
# The statements a stored referral costs, by the start of their text (comments stripped by the server).
_KINDS = {"referral": "WITH v AS MATERIALIZED", "youth": "WITH tris AS", "identity": "SELECT set_config"}
_STATS = """
SELECT s.query, s.calls, s.total_exec_time + s.total_plan_time AS ms
FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
WHERE r.rolname = $1 AND s.toplevel
"""


def _prepared(creds: dict[str, Any], count: int, seed: int) -> list[NewReferral]:
    callers = [
        Caller(kind="partner", id=p["id"], role="partner", partner_id=p["id"]) for p in creds["partners"]
    ]
    now = datetime.now(UTC)
    regions = Catalogue.load()
    out = []
    for i, body in enumerate(make_bodies(count, seed=seed)):
        caller = callers[i % len(callers)]
        data = msgspec.json.decode(body, type=ReferralIn)
        new, _ = prepare(
            caller,
            caller.identity,
            data,
            now,
            regions=regions,
            keyring=_KEYRING,
            youth_secret=_YOUTH_SECRET,
            idempotency_key=None,
            request_hash=b"\0" * 32,
        )
        out.append(new)
    return out


async def _store(pool: asyncpg.Pool, news: list[NewReferral], batch: int) -> None:
    for start in range(0, len(news), batch):
        chunk = news[start : start + batch]
        if len(chunk) == 1:
            async with transaction(pool, chunk[0].identity) as conn:
                await store_one(conn, chunk[0])
        else:
            async with transaction(pool, SYSTEM) as conn:
                await store_many(conn, chunk)


async def _measure(
    pool: asyncpg.Pool, admin: asyncpg.Connection, dsn: str, news: list[NewReferral], batch: int
) -> dict[str, Any]:
    await admin.execute("SELECT pg_stat_statements_reset()")
    wall, cpu = time.perf_counter(), time.process_time()
    await _store(pool, news, batch)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = len(news)
    # Counted as the end-to-end benchmark counts them (bench._stats: transaction control apart).
    statements = (await pg_counts(dsn)).statements
    per_kind = {kind: {"calls": 0, "ms": 0.0} for kind in _KINDS}
    for row in await admin.fetch(_STATS, SERVICE_ROLE):
        query = " ".join(row["query"].split())
        for kind, start in _KINDS.items():
            if query.startswith(start):
                per_kind[kind]["calls"] += row["calls"]
                per_kind[kind]["ms"] += row["ms"]
    return {
        "batch": batch,
        "referrals": n,
        "wall_us_per_referral": round(1e6 * wall / n, 1),
        "client_cpu_us_per_referral": round(1e6 * cpu / n, 1),
        "statements_per_referral": round(statements / n, 2),
        **{f"{kind}_us_per_referral": round(1000 * v["ms"] / n, 1) for kind, v in per_kind.items()},
        **{f"{kind}_calls_per_referral": round(v["calls"] / n, 2) for kind, v in per_kind.items()},
    }


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    settings = {"shared_preload_libraries": "pg_stat_statements"}
    pg = EmbeddedPostgres(workdir / "pg", fast=False, settings=settings)
    pg.start()
    try:
        dsn = pg.uri()
        await apply_migrations(dsn)
        admin = await asyncpg.connect(dsn)
        try:
            await admin.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            creds = await seed_demo(admin, "http://bench.invalid")
            _progress(f"preparing {args.referrals * (len(BATCHES) + 1):,} referrals")
            news = _prepared(creds, args.referrals * (len(BATCHES) + 1), args.seed)
            pool = await create_pool(service_dsn(dsn), min_size=1, max_size=1)
            try:
                _progress("warm-up")
                await _store(pool, news[: args.referrals], 8)
                results = []
                for k, batch in enumerate(BATCHES, start=1):
                    _progress(f"{args.referrals:,} referrals in batches of {batch}")
                    chunk = news[k * args.referrals : (k + 1) * args.referrals]
                    results.append(await _measure(pool, admin, dsn, chunk, batch))
            finally:
                await pool.close()
        finally:
            await admin.close()
    finally:
        pg.stop()
    return {"benchmark": "intake_store", "partners": len(creds["partners"]), "results": results}


def _table(doc: dict[str, Any]) -> str:
    lines = [
        f"intake's store path, serially, referrals round-robin over {doc['partners']} partners"
        " (µs per referral; a batch is split by partner)",
        "| batch | referrals | wall | client CPU | referral statement (calls) | youth statement (calls)"
        " | identity settings | statements |",
        "|---:|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in doc["results"]:
        lines.append(
            f"| {r['batch']} | {r['referrals']:,} | {r['wall_us_per_referral']:,.0f}"
            f" | {r['client_cpu_us_per_referral']:,.0f}"
            f" | {r['referral_us_per_referral']:,.0f} ({r['referral_calls_per_referral']})"
            f" | {r['youth_us_per_referral']:,.0f} ({r['youth_calls_per_referral']})"
            f" | {r['identity_calls_per_referral']} | {r['statements_per_referral']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake_store", description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=2_000, help="stored per batch size (default 2,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (PostgreSQL data)")
    args = parser.parse_args(argv)
    configure_logging("console", "WARNING", service="bench")
    return run_main(args, run, _table, prefix="refnet-bench-intake-store-", progress=_progress)


if __name__ == "__main__":
    sys.exit(main())
