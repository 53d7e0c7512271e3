"""Helpers for the fault suite: a chaos platform on its own PostgreSQL (in a tempfile.mkdtemp dir, so the
embedded server's system user can enter it) and printing reports past pytest's capture."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refnet_dev.chaos import ChaosReport, started_chaos_platform
from refnet_dev.platform import Platform


@contextlib.contextmanager
def chaos_platform(prefix: str, **kwargs: Any) -> Iterator[Platform]:
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    ok = False
    try:
        plat = started_chaos_platform(workdir, **kwargs)
        try:
            yield plat
            ok = True
        finally:
            plat.close()
    finally:
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"fault suite: kept {workdir} (service logs, data) for inspection")


def show(capsys: pytest.CaptureFixture[str], title: str, text: str) -> None:
    """Print to the terminal even under capture: the tables are the suite's output."""
    with capsys.disabled():
        print(f"\n===== {title} =====\n{text}\n", flush=True)


def explain(report: ChaosReport, plat: Platform) -> str:
    tails = "\n".join(f"--- {key}: {plat.log_tail(key, 8)}" for key in plat.procs)
    return f"{report.table()}\n{tails}\nworkdir: {plat.workdir}"
