"""`refnet backup` / `refnet restore`: back up, destroy, restore, and find every referral again.

Both ways the CLI finds the database: the embedded default (a `refnet up` data dir whose PostgreSQL
cluster is then deleted outright) and an external server named by REFNET_DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from refnet_dev.demo import seed_demo
from refnet_dev.embedded import EmbeddedPostgres
from shared.db import service_dsn
from shared.migrate import apply_migrations
from tests.conftest import clone_database

pytestmark = pytest.mark.faults

ROOT = Path(__file__).resolve().parents[2]


def refnet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("REFNET_")}
    return subprocess.run(
        [sys.executable, "-m", "refnet.cli", *args],
        env={**base, **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def _fill(dsn: str, count: int = 300) -> set[str]:
    """Referrals in every status with their assignments, as the services would have left them."""
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SELECT count(*) FROM partners") == 0:
            await seed_demo(conn, "http://test")
        partners = [r["id"] for r in await conn.fetch("SELECT id FROM partners")]
        cms = [r["staff_id"] for r in await conn.fetch("SELECT staff_id FROM case_managers")]
        ids: set[str] = set()
        async with conn.transaction():
            for i in range(count):
                rid = uuid.uuid4()
                status = ("assigned", "unroutable", "accepted")[i % 3]
                await conn.execute(
                    "INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years)"
                    " VALUES ($1, $2, $3, 'south_la', '{housing}', 'en', 'routine', 16)",
                    rid,
                    partners[i % len(partners)],
                    status,
                )
                if status != "unroutable":
                    await conn.execute(
                        "INSERT INTO assignments (id, referral_id, case_manager_id, state, respond_by)"
                        " VALUES ($1, $2, $3, $4, now() + interval '4 hours')",
                        uuid.uuid4(),
                        rid,
                        cms[i % len(cms)],
                        "offered" if status == "assigned" else "accepted",
                    )
                ids.add(str(rid))
        return ids
    finally:
        await conn.close()


async def _found(dsn: str) -> tuple[set[str], int, bool, bool]:
    conn = await asyncpg.connect(dsn)
    try:
        ids = {str(r["id"]) for r in await conn.fetch("SELECT id FROM referrals")}
        assignments = await conn.fetchval("SELECT count(*) FROM assignments")
        rls = await conn.fetchval(
            "SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE relname = 'referrals'"
        )
        grant = await conn.fetchval("SELECT has_table_privilege('refnet_app', 'referrals', 'SELECT')")
        return ids, int(assignments), bool(rls), bool(grant)
    finally:
        await conn.close()


@pytest.fixture
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="refnet-backup-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_embedded_backup_survives_losing_the_data_dir(data_dir: Path) -> None:
    pg = EmbeddedPostgres(data_dir / "postgres", fast=True)
    pg.start()
    try:
        asyncio.run(apply_migrations(pg.uri()))
        ids = asyncio.run(_fill(pg.uri()))
    finally:
        pg.stop()  # as after `refnet up` stopped: the command starts the server itself

    dump = data_dir / "backups" / "refnet.dump"
    done = refnet("backup", "--data-dir", str(data_dir), "--out", str(dump))
    assert done.returncode == 0, done.stderr
    assert "backup written" in done.stdout
    assert dump.stat().st_size > 0
    assert dump.stat().st_mode & 0o077 == 0
    assert not pg.is_running()  # started for the backup, stopped again

    shutil.rmtree(data_dir / "postgres")  # the disaster
    done = refnet("restore", str(dump), "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    assert f"{len(ids)} referral(s)" in done.stdout

    pg = EmbeddedPostgres(data_dir / "postgres", fast=True)
    pg.start()
    try:
        found, assignments, rls, grant = asyncio.run(_found(pg.uri()))
    finally:
        pg.stop()
    assert found == ids
    assert assignments == 2 * len(ids) // 3
    assert rls and grant  # row-level security and the service role's grants came back too


async def test_external_database_backup_and_restore(pg_server: EmbeddedPostgres, data_dir: Path) -> None:
    dsn = await clone_database(pg_server, "bk")
    ids = await _fill(dsn)
    env = {"REFNET_DATABASE_URL": dsn}
    dump = data_dir / "external.dump"
    done = await asyncio.to_thread(refnet, "backup", "--out", str(dump), env=env)
    assert done.returncode == 0, done.stderr

    # Not under running services: a connected service role makes restore refuse (unless --force).
    service = await asyncpg.connect(service_dsn(dsn))
    try:
        done = await asyncio.to_thread(refnet, "restore", str(dump), env=env)
    finally:
        await service.close()
    assert done.returncode == 1
    assert "stop the services first" in done.stderr

    # Rolling back over a live database: rows lost and rows added since are both undone.
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET app.role = 'system'")
        await conn.execute("DELETE FROM assignments")
        await conn.execute("DELETE FROM referrals WHERE status = 'unroutable'")
    finally:
        await conn.close()
    await _fill(dsn, count=5)
    done = await asyncio.to_thread(refnet, "restore", str(dump), env=env)
    assert done.returncode == 0, done.stderr
    assert (await _found(dsn))[0] == ids

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")  # the disaster
    finally:
        await conn.close()
    done = await asyncio.to_thread(refnet, "restore", str(dump), env=env)
    assert done.returncode == 0, done.stderr
    found, _, rls, grant = await _found(dsn)
    assert found == ids
    assert rls and grant


def test_restore_refuses_a_broken_dump_and_changes_nothing(data_dir: Path) -> None:
    bogus = data_dir / "bogus.dump"
    bogus.write_bytes(b"PGDMP not really a dump")
    done = refnet(
        "restore", str(bogus), env={"REFNET_DATABASE_URL": "postgresql://nobody@/nowhere?host=/nonexistent"}
    )
    assert done.returncode != 0
    assert done.stderr.strip().startswith("refnet restore:")
    assert len(done.stderr.strip().splitlines()) == 1
