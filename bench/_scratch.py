"""What the single-database benchmarks share: a scratch PostgreSQL, the run-in-a-temp-dir main, HEAD's id."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from bench._platform import ROOT
from refnet_dev.embedded import EmbeddedPostgres

__all__ = ["commit_id", "progress_to_stderr", "run_main", "scratch_database"]


def progress_to_stderr(name: str) -> Callable[[str], None]:
    """A progress printer: stderr, so stdout carries only the results table."""

    def progress(message: str) -> None:
        print(f"{name}: {message}", file=sys.stderr, flush=True)

    return progress


def commit_id(root: Path = ROOT) -> str:
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


@asynccontextmanager
async def scratch_database(workdir: Path, name: str) -> AsyncIterator[str]:
    """A durable (fsync on) embedded PostgreSQL under ``workdir`` with an empty database ``name``; its
    superuser DSN. The server stops when the block ends, also on error."""
    pg = EmbeddedPostgres(workdir / "pg", fast=False)
    pg.start()
    try:
        conn = await asyncpg.connect(pg.uri())
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        yield pg.uri(name)
    finally:
        pg.stop()


def run_main(
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, Path], Coroutine[Any, Any, dict[str, Any]]],
    table: Callable[[dict[str, Any]], str],
    *,
    prefix: str,
    progress: Callable[[str], None],
) -> int:
    """Run ``run(args, workdir)`` in a fresh temp dir (removed afterwards unless ``args.keep``), print
    ``table`` of its result and write it to ``args.json`` if given; 130 on Ctrl-C."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        doc = asyncio.run(run(args, workdir))
    except KeyboardInterrupt:
        return 130
    finally:
        if args.keep:
            progress(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(doc))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return 0
