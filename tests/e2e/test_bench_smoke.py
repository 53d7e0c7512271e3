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


def test_the_benchmark_runs_to_the_end(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    argv = ["--quick", "--rates", "20", "--duration", "2", "--no-search", "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", *argv],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    for field in CONTRACT_FIELDS:
        assert isinstance(result[field], int | float), (field, result[field])
    # The replay ran the services' recorded SQL (every statement of it: pgbench stops at an error).
    assert result["pgbench_tps"] > 0
    assert result["reference_pgbench_tps"] > 0
    [step] = result["steps"]
    assert step["accepted"] > 0 and step["errors"] == 0, step
    assert step["statements_per_referral"] > 0, step
