"""Percentiles and the Markdown summary table printed after a run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["markdown_table", "percentile"]


def percentile(values: Sequence[float], p: float) -> float | None:
    """Linear-interpolated percentile (p in 0..100) of values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    lo, hi = math.floor(rank), math.ceil(rank)
    if lo == hi:
        return ordered[lo]
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"
    else:
        text = f"{value:,}" if isinstance(value, int) else str(value)
    return f"{text} {unit}".rstrip()


def markdown_table(result: dict[str, Any]) -> str:
    """The headline numbers of a result document as a two-column Markdown table."""
    rows: list[tuple[str, str]] = [
        ("commit", str(result["commit"])[:12]),
        ("machine", f"{result['machine']['cpu_count']} CPUs, {result['machine']['platform']}"),
        ("load", f"{result['concurrency']} closed-loop partners, {_fmt(result['duration_s'], 's')} measured"),
        ("max_sustained_rps (achieved accepted/s)", _fmt(result["max_sustained_rps"])),
        ("accepted / errors", f"{result['accepted']:,} / {result['errors']:,}"),
        (
            "intake p50 / p99",
            f"{_fmt(result['intake_p50_ms'], 'ms')} / {_fmt(result['intake_p99_ms'], 'ms')}",
        ),
        (
            "received→assigned p50 / p99",
            f"{_fmt(result['assign_p50_ms'], 'ms')} / {_fmt(result['assign_p99_ms'], 'ms')}",
        ),
        (
            "received→notified p50 / p99",
            f"{_fmt(result['e2e_p50_ms'], 'ms')} / {_fmt(result['e2e_p99_ms'], 'ms')}",
        ),
        (
            "  hops p50 (see README)",
            ", ".join(f"{k} {_fmt(v['p50'], 'ms')}" for k, v in result["stages_ms"].items()),
        ),
        ("not notified after drain", f"{result['not_notified']:,} (unroutable: {result['unroutable']:,})"),
        ("pgbench ceiling (referrals/s)", _fmt(result["pgbench_tps"])),
        ("ratio_to_pgbench", _fmt(result["ratio_to_pgbench"])),
    ]
    for name, mb in result["peak_rss_mb"].items():
        rows.append((f"peak RSS {name}", _fmt(mb, "MB")))
    for name, mb in result.get("infra_peak_mb", {}).items():
        rows.append((f"peak {name}", _fmt(mb, "MB")))
    cpu = result.get("cpu_s", {})
    if cpu:
        rows.append(
            (
                f"CPU s over {_fmt(result['load_wall_s'], 's')} of load",
                ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()),
            )
        )
        busy, other = _fmt(result["machine_cpu_busy_pct"], "%"), _fmt(result["other_cpu_s"], "CPU-s")
        rows.append(("machine CPU busy during load", f"{busy} (not ours: {other})"))
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)
