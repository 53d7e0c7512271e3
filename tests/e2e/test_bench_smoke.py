"""The end-to-end benchmark runs to the end: one short step at a low rate, the recorded-SQL pgbench replay,
the reference ceiling and the JetStream loop, with the contract's fields in its JSON. No number is
judged here (performance is measured by the benchmark, not asserted by tests): a service statement the
replay cannot run, or any other step that breaks, fails this test instead of the next bench run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.platform import ROOT

CONTRACT_FIELDS = (
    "intake_p99_ms",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "pgbench_tps",
    "ratio_to_pgbench",
    "reference_pgbench_tps",
    "ratio_to_reference",
)


def _run(module: str, args: list[str], tmp_path: Path) -> dict[str, Any]:
    """Run a benchmark module as a user would (a process of its own); its JSON results."""
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", module, *args, "--json", str(out)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def test_the_benchmark_runs_to_the_end(tmp_path: Path) -> None:
    result = _run("bench", ["--quick", "--rates", "20", "--duration", "2", "--no-search"], tmp_path)
    for field in CONTRACT_FIELDS:
        assert isinstance(result[field], int | float), (field, result[field])
    # The replay ran the services' recorded SQL (every statement of it: pgbench stops at an error).
    assert result["pgbench_tps"] > 0
    assert result["reference_pgbench_tps"] > 0
    [step] = result["steps"]
    assert step["accepted"] > 0 and step["errors"] == 0, step
    assert step["statements_per_referral"] > 0, step


def test_the_intake_store_benchmark_batches_by_caller(tmp_path: Path) -> None:
    # bench.intake_store (the serial measurement docs/performance.md quotes) runs, and shows what it
    # claims: alone, one referral statement and one youth statement per referral; in a batch of 20
    # referrals over the demo's partners, one of each per partner, not per referral.
    doc = _run("bench.intake_store", ["--referrals", "20"], tmp_path)
    by_batch = {r["batch"]: r for r in doc["results"]}
    assert by_batch[1]["referral_calls_per_referral"] == by_batch[1]["youth_calls_per_referral"] == 1.0
    partners = doc["partners"]
    assert 1 < partners < 20
    for kind in ("referral", "youth"):
        assert by_batch[64][f"{kind}_calls_per_referral"] == round(partners / 20, 2), by_batch[64]
