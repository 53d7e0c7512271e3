"""Helpers for the fault suite: a ChaosPlatform on its own PostgreSQL (in a tempfile.mkdtemp dir, so the
embedded server's system user can enter it) and printing reports past pytest's capture."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from refnet_dev.chaos import ChaosPlatform, ChaosReport


@contextlib.contextmanager
def chaos_platform(prefix: str, **kwargs: Any) -> Iterator[ChaosPlatform]:
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    plat = ChaosPlatform(workdir, **kwargs)
    ok = False
    try:
        plat.start_servers()
        asyncio.run(plat.prepare_database())
        plat.start_all()
        yield plat
        ok = True
    finally:
        plat.close()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"fault suite: kept {workdir} (service logs, data) for inspection")


def show(capsys: pytest.CaptureFixture[str], title: str, text: str) -> None:
    """Print to the terminal even under capture: the tables are the suite's output."""
    with capsys.disabled():
        print(f"\n===== {title} =====\n{text}\n", flush=True)


def explain(report: ChaosReport, plat: ChaosPlatform) -> str:
    tails = "\n".join(f"--- {key}: {plat.log_tail(key, 8)}" for key in plat.procs)
    return f"{report.table()}\n{tails}\nworkdir: {plat.workdir}"
