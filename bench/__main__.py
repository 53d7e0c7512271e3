"""`python -m bench` / `refnet bench`: the end-to-end benchmark against embedded servers."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as platform_mod
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench._load import make_bodies, run_load
from bench._measure import STAGES, pipeline_stats, stream_times, wait_drained
from bench._pgbench import build_scripts, checkpoint, run_pgbench
from bench._platform import ROOT, SERVICES, BenchError, BenchPlatform
from bench._report import markdown_table, percentile
from bench._sampler import ResourceSampler, cpu_seconds, machine_cpu_seconds, postgres_cpu_seconds
from shared.logging import configure_logging

__all__ = ["main"]

PGBENCH_CLIENTS = 8
PGBENCH_THREADS = 2


def _progress(message: str) -> None:
    # Progress goes to stderr so stdout carries only the results table.
    print(f"bench: {message}", file=sys.stderr, flush=True)


def _commit(root: Path = ROOT) -> str:
    """HEAD's commit id, read from .git directly (same answer as `git rev-parse HEAD`), else "unknown"."""
    try:
        git = root / ".git"
        if git.is_file():  # worktree or submodule: "gitdir: <path>"
            git = (root / git.read_text().split(":", 1)[1].strip()).resolve()
        common = git
        if (git / "commondir").exists():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
        for line in (common / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return "unknown"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="refnet bench",
        description="End-to-end benchmark: embedded PostgreSQL + NATS, the three services, closed-loop "
        "partners, and a pgbench ceiling of the same SQL.",
    )
    parser.add_argument("--quick", action="store_true", help="a short run (10 s of load, under a minute)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    parser.add_argument("--duration", type=float, metavar="S", help="measured seconds (default 30, quick 10)")
    parser.add_argument("--concurrency", type=int, default=9, metavar="N", help="partners (default 9)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data, pgbench scripts)")
    args = parser.parse_args(argv)
    if args.duration is not None and args.duration <= 0:
        parser.error("--duration must be positive")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    return args


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _run(args: argparse.Namespace, plat: BenchPlatform) -> dict[str, Any]:
    quick: bool = args.quick
    duration = float(args.duration or (10 if quick else 30))
    warmup = 1.0 if quick else 3.0
    drain_timeout = 15.0 if quick else 30.0
    pgbench_seconds = 5 if quick else 10
    # Discarded pgbench run: connections, prepared statements and caches warm up outside the window.
    pgbench_warmup = 1 if quick else 2
    started_at = datetime.now(UTC)

    _progress(f"starting PostgreSQL and NATS in {plat.workdir}")
    plat.start_servers()
    asyncio.run(plat.prepare_database())
    assert plat.pg is not None
    assert plat.nats is not None
    _progress("starting intake, routing and notify")
    plat.start_services()

    pids = {name: proc.pid for name, proc in plat.procs.items()}
    nats_pid = plat.nats.pid
    postmaster = plat.pg.pid
    sampler = ResourceSampler({**pids, **({"nats": nats_pid} if nats_pid else {})}, postmaster)
    sampler.start()
    try:
        keys = [p["api_key"] for p in plat.creds["partners"]]
        bodies = make_bodies(2000)
        _progress(f"load: {args.concurrency} partners, {warmup:.0f} s warm-up + {duration:g} s measured")
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        pg_cpu_before = postgres_cpu_seconds(postmaster) if postmaster else 0.0
        nats_cpu_before = cpu_seconds(nats_pid) if nats_pid else 0.0
        own_cpu_before = time.process_time()
        busy_before, total_before = machine_cpu_seconds()
        load_started = time.monotonic()
        load = asyncio.run(run_load(plat.base_url, keys, args.concurrency, warmup, duration, bodies))
        load_wall = time.monotonic() - load_started
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        cpu["postgres"] = (postgres_cpu_seconds(postmaster) if postmaster else 0.0) - pg_cpu_before
        cpu["nats"] = (cpu_seconds(nats_pid) if nats_pid else 0.0) - nats_cpu_before
        cpu["load_generator"] = time.process_time() - own_cpu_before
        busy_after, total_after = machine_cpu_seconds()
        machine_busy = (busy_after - busy_before) / max(1e-9, total_after - total_before)
        # CPU the machine spent beyond what our processes account for: other workloads (or kernel
        # work no process is charged for). Large values mean the numbers are not representative.
        other_cpu = max(0.0, (busy_after - busy_before) - sum(cpu.values()))
        if other_cpu > 0.1 * (total_after - total_before):
            _progress(f"warning: {other_cpu:.1f} CPU-s during the load were not ours; the machine was busy")
        plat.check_services()

        measured = load.measured()
        ok = [lat * 1000 for _, lat, status in measured if status == 201]
        if not ok:
            raise BenchError(f"no referral was accepted ({load.first_error or 'no requests completed'})")
        status_counts: dict[str, int] = {}
        for _, _, status in measured:
            status_counts[str(status)] = status_counts.get(str(status), 0) + 1

        _progress("load done; waiting for the pipeline to drain")
        pending, drain_s = asyncio.run(wait_drained(plat.dsn, drain_timeout))
        subjects = ("refnet.referral.received", "refnet.referral.assigned")
        published = asyncio.run(stream_times(plat.nats.url, subjects))
        stats = asyncio.run(pipeline_stats(plat.dsn, load.window_start_utc, load.window_end_utc, published))
    finally:
        sampler.stop()
    plat.check_services()
    # The services would relay pgbench's outbox rows to NATS and compete for the CPU: stop them first.
    plat.stop_services()

    _progress(f"pgbench: -c {PGBENCH_CLIENTS} -j {PGBENCH_THREADS} -T {pgbench_seconds}")
    scripts, defines = asyncio.run(build_scripts(plat.dsn, plat.creds, plat.workdir))
    asyncio.run(checkpoint(plat.dsn))
    run_pgbench(
        plat.pg, scripts, defines, clients=PGBENCH_CLIENTS, threads=PGBENCH_THREADS, seconds=pgbench_warmup
    )
    pgb = run_pgbench(
        plat.pg, scripts, defines, clients=PGBENCH_CLIENTS, threads=PGBENCH_THREADS, seconds=pgbench_seconds
    )

    rps = len(ok) / duration
    mb = 1024.0
    return {
        "commit": _commit(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "quick": quick,
        "max_sustained_rps": round(rps, 2),
        "max_sustained_rps_method": "achieved accepted referrals/s of one closed-loop run, not a rate search",
        "accepted": len(ok),
        "errors": len(measured) - len(ok),
        "status_counts": status_counts,
        "first_error": load.first_error or None,
        "intake_p50_ms": _ms(percentile(ok, 50)),
        "intake_p90_ms": _ms(percentile(ok, 90)),
        "intake_p99_ms": _ms(percentile(ok, 99)),
        "intake_max_ms": _ms(max(ok)),
        "e2e_p50_ms": _ms(percentile(stats.notify_ms, 50)),
        "e2e_p90_ms": _ms(percentile(stats.notify_ms, 90)),
        "e2e_p99_ms": _ms(percentile(stats.notify_ms, 99)),
        "e2e_max_ms": _ms(max(stats.notify_ms)) if stats.notify_ms else None,
        "assign_p50_ms": _ms(percentile(stats.assign_ms, 50)),
        "assign_p99_ms": _ms(percentile(stats.assign_ms, 99)),
        "stages_ms": {
            stage: {"p50": _ms(percentile(values, 50)), "p99": _ms(percentile(values, 99))}
            for stage, values in ((s, stats.stages_ms[s]) for s in STAGES)
        },
        "referrals_in_window": stats.referrals,
        "notified_in_window": len(stats.notify_ms),
        "unroutable": stats.unroutable,
        "not_notified": stats.not_notified,
        "drain_s": round(drain_s, 2),
        "drain_timed_out": pending > 0,
        "pgbench_tps": round(pgb.tps, 2),
        "ratio_to_pgbench": round(rps / pgb.tps, 3) if pgb.tps else None,
        "pgbench": {
            "clients": PGBENCH_CLIENTS,
            "threads": PGBENCH_THREADS,
            "seconds": pgbench_seconds,
            "warmup_seconds": pgbench_warmup,
            "referrals": pgb.transactions,
            "failed": pgb.failed,
            "latency_avg_ms": pgb.latency_ms,
            "command": " ".join(pgb.command),
        },
        "peak_rss_mb": {name: round(sampler.peak_kb[name] / mb, 1) for name in SERVICES},
        "infra_peak_mb": {
            "postgres_pss": round(sampler.postgres_peak_kb / mb, 1),
            "nats_rss": round(sampler.peak_kb.get("nats", 0) / mb, 1),
        },
        "rss_samples": sampler.samples,
        "cpu_s": {name: round(v, 2) for name, v in cpu.items()},
        "machine_cpu_busy_pct": round(100 * machine_busy, 1),
        "other_cpu_s": round(other_cpu, 2),
        "load_wall_s": round(load_wall, 2),
        "duration_s": duration,
        "warmup_s": warmup,
        "concurrency": args.concurrency,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": f"{platform_mod.system()} {platform_mod.machine()}",
            "python": platform_mod.python_version(),
        },
    }


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 on success, non-zero with a one-line reason on stderr otherwise."""
    args = _parse(argv)
    # Only warnings, and on stderr: stdout is for the results table.
    configure_logging("console", "WARNING", service="bench")
    # SIGTERM takes the Ctrl-C path so every process is stopped and the temp dir removed.
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    workdir = Path(tempfile.mkdtemp(prefix="refnet-bench-"))
    plat = BenchPlatform(workdir)
    code = 1
    try:
        result = _run(args, plat)
        print(markdown_table(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
            _progress(f"results written to {args.json}")
        code = 0
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        code = 130
    except BenchError as exc:
        print(f"bench: {exc}".splitlines()[0], file=sys.stderr)
    except Exception as exc:
        print(f"bench: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave servers behind.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            plat.close()
        except Exception as exc:
            print(f"bench: cleanup failed: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
            code = code or 1
        if args.keep:
            _progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous)
    return code


if __name__ == "__main__":
    sys.exit(main())
