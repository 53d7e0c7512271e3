"""The benchmarks' platform (refnet_dev's launcher with durable PostgreSQL settings and the demo network)
and the main that runs a benchmark on it."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg

from bench._replay import LOG_SETTINGS
from refnet_dev.platform import SERVICES, Platform, PlatformError

__all__ = [
    "CAPACITY",
    "ROOT",
    "SERVICES",
    "BenchError",
    "bench_platform",
    "prepare_bench_database",
    "run_on_platform",
]

ROOT = Path(__file__).resolve().parents[1]
# Enough that no referral goes unroutable for capacity: the benchmark measures throughput, not
# what happens when every case manager is full.
CAPACITY = 1_000_000


class BenchError(Exception):
    """The benchmark cannot go on; the message is the one-line reason shown to the user."""


def bench_platform(
    workdir: Path, env: Mapping[str, str] | None = None, workers: Mapping[str, int] | None = None
) -> Platform:
    """Embedded PostgreSQL (durable: fsync and full_page_writes on, so the numbers mean something in
    production; statement logging for the pgbench replay) and NATS, the three services as processes."""
    return Platform(
        workdir,
        pg_fast=False,
        workers=workers,
        # pg_stat_statements: statements and transactions per referral at each rate (bench._stats).
        pg_settings={**LOG_SETTINGS, "shared_preload_libraries": "pg_stat_statements"},
        env={
            # The benchmark measures the pipeline, not the per-key rate limit.
            "REFNET_RATE_LIMIT_PER_MINUTE": "0",
            # Logging every request would measure the log pipeline, not the system.
            "REFNET_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            # Several intake processes share the one port the load is sent to.
            **({"REFNET_REUSE_PORT": "true"} if (workers or {}).get("intake", 1) > 1 else {}),
            **(env or {}),
        },
    )


async def prepare_bench_database(plat: Platform) -> None:
    """Migrate and seed the demo network with room for every referral the benchmark offers."""
    await plat.prepare_database(capacity=CAPACITY)
    conn = await asyncpg.connect(plat.admin_dsn)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_on_platform(
    name: str,
    args: argparse.Namespace,
    measure: Callable[[Platform], dict[str, Any]],
    table: Callable[[dict[str, Any]], str],
    *,
    env: Mapping[str, str] | None = None,
    workers: Mapping[str, int] | None = None,
    progress: Callable[[str], None],
) -> int:
    """A benchmark's main: ``measure`` a fresh bench platform in a temp dir (removed unless
    ``args.keep``), print ``table`` of the result and write it to ``args.json``; 0 on success, 130 on
    Ctrl-C or SIGTERM, else 1 with a one-line reason on stderr. Every process is stopped either way."""
    # SIGTERM takes the Ctrl-C path so every process is stopped and the temp dir removed.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix=f"refnet-{name.replace('.', '-')}-"))
    plat = bench_platform(workdir, env, workers)
    code = 1
    try:
        result = measure(plat)
        print(table(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
            progress(f"results written to {args.json}")
        code = 0
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        code = 130
    except (BenchError, PlatformError) as exc:
        print(f"{name}: {exc}".splitlines()[0], file=sys.stderr)
    except Exception as exc:
        print(f"{name}: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave servers behind.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            plat.close()
        except Exception as exc:
            print(f"{name}: cleanup failed: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
            code = code or 1
        if args.keep:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous)
    return code
