"""The audit chain: sealed in order, verified end to end, and `refnet audit verify` finds the first broken link."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared import audit
from shared.db import Identity, create_pool, service_dsn, transaction
from tests.support.platform import ROOT

ACTOR = Identity(role="admin", actor_id="00000000-0000-0000-0000-000000000001")


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(service_dsn(db_dsn), max_size=4)
    yield p
    await p.close()


async def _write(pool: asyncpg.Pool, n: int) -> None:
    for i in range(n):
        async with transaction(pool, ACTOR) as conn:
            await audit.record(conn, ACTOR, "test.event", "thing", str(i), {"i": i})


def _cli_verify(dsn: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFNET_")}
    env["REFNET_DATABASE_URL"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "refnet.cli", "audit", "verify"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_concurrent_sealers_build_one_chain(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    await _write(pool, 30)
    await asyncio.gather(*(audit.seal(pool, batch=7) for _ in range(6)))
    while await audit.seal(pool):
        pass
    seqs = [r["seq"] for r in await db.fetch("SELECT seq FROM audit_log ORDER BY seq")]
    assert seqs == list(range(1, 31))
    result = await audit.verify(db)
    assert result.ok and result.checked == 30 and result.unsealed == 0


async def test_tampering_is_detected_by_the_cli(
    pool: asyncpg.Pool, db: asyncpg.Connection, db_dsn: str
) -> None:
    await _write(pool, 12)
    await audit.seal(pool)
    ok = _cli_verify(db_dsn)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "12 sealed row(s) verified" in ok.stdout

    # An attacker with superuser rights bypasses the guard trigger and edits one row's content.
    target = await db.fetchval("SELECT id FROM audit_log WHERE seq = 5")
    await db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_guard")
    await db.execute("UPDATE audit_log SET detail = '{\"i\": 999}' WHERE id = $1", target)
    await db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_guard")
    bad = _cli_verify(db_dsn)
    assert bad.returncode == 1
    assert "BROKEN at seq 5" in bad.stdout and f"row id {target}" in bad.stdout


async def test_deleted_row_is_detected(pool: asyncpg.Pool, db: asyncpg.Connection) -> None:
    await _write(pool, 6)
    await audit.seal(pool)
    await db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_guard")
    await db.execute("DELETE FROM audit_log WHERE seq = 3")
    await db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_guard")
    result = await audit.verify(db)
    assert not result.ok and result.broken_seq == 3 and "missing" in result.reason


async def test_sealed_rows_cannot_be_changed_even_through_the_sealing_grant(pool: asyncpg.Pool) -> None:
    await _write(pool, 2)
    await audit.seal(pool)
    with pytest.raises(asyncpg.RaiseError, match="sealed"):
        async with transaction(pool, Identity(role="system")) as conn:
            await conn.execute("UPDATE audit_log SET hash = 'x' WHERE seq = 1")
