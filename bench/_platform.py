"""The benchmarks' platform: refnet_dev's launcher with durable PostgreSQL settings and the demo network."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from bench._replay import LOG_SETTINGS
from refnet_dev.platform import SERVICES, Platform

__all__ = ["CAPACITY", "ROOT", "SERVICES", "BenchError", "bench_platform", "prepare_bench_database"]

ROOT = Path(__file__).resolve().parents[1]
# Enough that no referral goes unroutable for capacity: the benchmark measures throughput, not
# what happens when every case manager is full.
CAPACITY = 1_000_000


class BenchError(Exception):
    """The benchmark cannot go on; the message is the one-line reason shown to the user."""


def bench_platform(workdir: Path, env: Mapping[str, str] | None = None) -> Platform:
    """Embedded PostgreSQL (durable: fsync and full_page_writes on, so the numbers mean something in
    production; statement logging for the pgbench replay) and NATS, the three services as processes."""
    return Platform(
        workdir,
        pg_fast=False,
        pg_settings=LOG_SETTINGS,
        env={
            # The benchmark measures the pipeline, not the per-key rate limit.
            "REFNET_RATE_LIMIT_PER_MINUTE": "0",
            # Logging every request would measure the log pipeline, not the system.
            "REFNET_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            **(env or {}),
        },
    )


async def prepare_bench_database(plat: Platform) -> None:
    """Migrate and seed the demo network with room for every referral the benchmark offers."""
    await plat.prepare_database(capacity=CAPACITY)
