"""pgbench against the benchmark's server: run a script (see bench/_replay.py) and read its numbers."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from refnet_dev.embedded import EmbeddedPostgres

__all__ = ["PgbenchResult", "checkpoint", "run_pgbench"]


async def checkpoint(dsn: str) -> None:
    """Flush the load's dirty pages now, so that checkpoint does not land inside pgbench's window."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


@dataclass
class PgbenchResult:
    tps: float
    latency_ms: float | None
    transactions: int
    failed: int
    command: list[str]


def run_pgbench(
    pg: EmbeddedPostgres,
    scripts: list[Path],
    defines: dict[str, str],
    *,
    clients: int,
    threads: int,
    seconds: int,
    user: str,
    database: str,
) -> PgbenchResult:
    """Run the scripts (picked at random per run) with the prepared protocol, as asyncpg uses.

    As `user`: the services' role, so row-level security costs the same as in the services.
    """
    argv = _argv(pg, scripts, defines, clients=clients, threads=threads, seconds=seconds, user=user)
    argv.append(database)
    # The server asks every client for a password; pgbench reads it from the cluster's passfile.
    env = {**os.environ, "PGPASSFILE": str(pg.passfile)}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False, env=env)
    out = proc.stdout
    tps = re.search(r"^tps = ([0-9.]+)", out, re.MULTILINE)
    if proc.returncode != 0 or tps is None:
        lines = proc.stderr.strip().splitlines() or ["no output"]
        # The first server error says why; the last line is only "Run was aborted".
        reason = next((ln for ln in lines if "ERROR" in ln or "error" in ln), lines[-1])
        raise RuntimeError(f"pgbench failed (exit {proc.returncode}): {reason}")
    latency = re.search(r"^latency average = ([0-9.]+) ms", out, re.MULTILINE)
    processed = re.search(r"^number of transactions actually processed: (\d+)", out, re.MULTILINE)
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.MULTILINE)
    # The -D constants (hundreds of recorded parameter values) are left out of the echoed command.
    shown = [a for a in argv if a != "-D" and not re.match(r"k\d+=", a)]
    shown.insert(-1, f"-D <{len(defines)} recorded constants>")
    return PgbenchResult(
        tps=float(tps.group(1)),
        latency_ms=float(latency.group(1)) if latency else None,
        transactions=int(processed.group(1)) if processed else 0,
        failed=int(failed.group(1)) if failed else 0,
        command=shown,
    )


def _argv(
    pg: EmbeddedPostgres,
    scripts: list[Path],
    defines: dict[str, str],
    *,
    clients: int,
    threads: int,
    seconds: int,
    user: str,
) -> list[str]:
    argv = [
        str(pg.bin_dir / "pgbench"),
        "-n",
        "-M",
        "prepared",
        "-h",
        str(pg.socket_dir),
        "-p",
        str(pg.port),
        "-U",
        user,
        "-c",
        str(clients),
        "-j",
        str(threads),
        "-T",
        str(seconds),
    ]
    for path in scripts:
        argv += ["-f", str(path)]
    for name, value in defines.items():
        argv += ["-D", f"{name}={value}"]
    return argv
