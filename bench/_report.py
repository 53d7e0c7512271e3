"""Percentiles and the Markdown summary table printed after a run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = ["markdown_report", "percentile"]


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


def _pair(a: Any, b: Any) -> str:
    return f"{_fmt(a)} / {_fmt(b)}"


def markdown_report(result: dict[str, Any]) -> str:
    """The rate steps as one Markdown table, then the ceilings, ratios and resources."""
    lines = [
        f"commit {str(result['commit'])[:12]}, {result['machine']['cpu_count']} CPUs, "
        f"{result['machine']['platform']}, Python {result['machine']['python']}; "
        f"{_fmt(result['duration_s'], 's')} measured per fixed rate (search steps shorter)",
        "",
        "| offered/s | achieved/s | errors | intake p50/p99 ms | received→assigned p50/p99 ms "
        "| received→notified p50/p99 ms | CPU ms/referral (intake, routing, notify, postgres, nats) "
        "| CPU ms/referral total | statements / transactions per referral "
        "| max outbox / consumer lag | sustained |",
        "|---:|---:|---:|---|---|---|---|---:|---|---|---|",
    ]
    for step in result["steps"]:
        cpu = step["cpu_ms_per_referral"]
        lag = step["max_consumer_lag"]
        cpu_text = ", ".join(
            f"{cpu.get(k, 0):.2f}" for k in ("intake", "routing", "notify", "postgres", "nats")
        )
        lag_text = f"{step['max_outbox_rows']} / {max(lag.values()) if lag else 0}"
        offered = _fmt(step["offered_rps"]) + (" (search)" if step.get("search") else "")
        lines.append(
            f"| {offered} | {_fmt(step['achieved_rps'])} | {step['errors'] + step['unsent']} "
            f"| {_pair(step['intake_p50_ms'], step['intake_p99_ms'])} "
            f"| {_pair(step['assign_p50_ms'], step['assign_p99_ms'])} "
            f"| {_pair(step['e2e_p50_ms'], step['e2e_p99_ms'])} | {cpu_text} "
            f"| {_fmt(step.get('cpu_ms_per_referral_total'))} "
            f"| {_pair(step.get('statements_per_referral'), step.get('transactions_per_referral'))} "
            f"| {lag_text} "
            f"| {'yes' if step['sustained'] else 'no'} |"
        )
    pgb, js = result["pgbench"], result["jetstream"]
    rows: list[tuple[str, str]] = [
        ("max sustained rate (achieved referrals/s)", _fmt(result["max_sustained_rps"])),
        (
            "pgbench ceiling (recorded SQL replayed, referrals/s)",
            f"{_fmt(pgb['ceiling_referrals_per_s'])} ({pgb['capture']['statements_per_referral']} statements, "
            f"{pgb['capture']['transactions_per_referral']} transactions per referral)",
        ),
        ("ratio to pgbench ceiling", _fmt(result["ratio_to_pgbench"])),
        (
            "reference ceiling (minimal two-transaction referral, referrals/s)",
            _fmt(result.get("reference_pgbench_tps")),
        ),
        ("ratio to reference ceiling", _fmt(result.get("ratio_to_reference"))),
        (
            "at the reported rate: intake p99, received→notified p50 / p99 (ms)",
            f"{_fmt(result.get('intake_p99_ms'))}, {_pair(result.get('e2e_p50_ms'), result.get('e2e_p99_ms'))}",
        ),
        (
            "JetStream raw publish / consume (msgs/s)",
            f"{_fmt(js['publish_per_s'])} / {_fmt(js['consume_per_s'])}",
        ),
        (
            "JetStream ceiling (referrals/s)",
            f"{_fmt(js['ceiling_referrals_per_s'])} ({js['events_published_per_referral']} events, "
            f"{js['deliveries_per_referral']} deliveries per referral)",
        ),
        ("ratio to JetStream ceiling", _fmt(result["ratio_to_jetstream"])),
    ]
    for name, mb in result["peak_rss_mb"].items():
        rows.append((f"peak RSS {name}", _fmt(mb, "MB")))
    for name, mb in result.get("infra_peak_mb", {}).items():
        rows.append((f"peak {name}", _fmt(mb, "MB")))
    width = max(len(k) for k, _ in rows)
    lines += ["", f"| {'metric'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    lines += _statements_table(result["steps"])
    return "\n".join(lines)


def _statements_table(steps: list[dict[str, Any]], top: int = 8) -> list[str]:
    """Where PostgreSQL's time went at the highest sustained fixed rate (else the highest one run)."""
    fixed = [s for s in steps if not s.get("search") and s.get("top_statements")]
    if not fixed:
        return []
    sustained = [s for s in fixed if s["sustained"]]
    step = max(sustained or fixed, key=lambda s: float(s["offered_rps"]))
    lines = [
        "",
        f"Statements with the most PostgreSQL execution time at {_fmt(step['offered_rps'])}/s, per referral:",
        "",
        "| exec µs | calls | rows | WAL records | statement |",
        "|---:|---:|---:|---:|---|",
    ]
    for t in step["top_statements"][:top]:
        query = str(t["query"]).replace("|", "\\|")[:100]
        lines.append(
            f"| {_fmt(t['exec_us_per_referral'])} | {_fmt(t['calls_per_referral'])} "
            f"| {_fmt(t['rows_per_referral'])} | {_fmt(t['wal_records_per_referral'])} | `{query}` |"
        )
    return lines
