"""`./dev --help` lists every `refnet` subcommand (a newcomer's first look at what there is)."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

from refnet.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_dev_help_lists_every_refnet_command() -> None:
    done = subprocess.run(
        [str(ROOT / "dev"), "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    listed = {
        line.split()[0] for line in done.stdout.splitlines() if line.startswith("    ") and line.split()
    }
    assert set(sub.choices) <= listed, set(sub.choices) - listed
    for wrapper_command in ("./dev up", "./dev test", "./dev check"):
        assert wrapper_command in done.stdout
