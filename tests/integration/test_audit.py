"""The audit chain: sealed in order under a key kept outside the database, anchored in a file, verified end to
end; `refnet audit verify` finds the first broken link, even when a superuser recomputed the chain."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from shared import audit
from shared.db import Identity, create_pool, service_dsn, transaction
from tests.support.platform import ROOT

ACTOR = Identity(role="admin", actor_id="00000000-0000-0000-0000-000000000001")
KEY = b"test-audit-key-kept-outside-the-database"


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(service_dsn(db_dsn), max_size=4)
    yield p
    await p.close()


async def _write(pool: asyncpg.Pool, n: int) -> None:
    for i in range(n):
        async with transaction(pool, ACTOR) as conn:
            await audit.record(conn, ACTOR, "test.event", "thing", str(i), {"i": i})


def _cli_verify(dsn: str, anchors: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFNET_")}
    env["REFNET_DATABASE_URL"] = dsn
    env["REFNET_AUDIT_KEY"] = KEY.decode()
    env["REFNET_AUDIT_ANCHOR_FILE"] = str(anchors or "/nonexistent/anchors.log")
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
    await asyncio.gather(*(audit.seal(pool, KEY, batch=7) for _ in range(6)))
    while await audit.seal(pool, KEY):
        pass
    seqs = [r["seq"] for r in await db.fetch("SELECT seq FROM audit_log ORDER BY seq")]
    assert seqs == list(range(1, 31))
    result = await audit.verify(db, KEY)
    assert result.ok and result.checked == 30 and result.unsealed == 0


async def test_tampering_is_detected_by_the_cli(
    pool: asyncpg.Pool, db: asyncpg.Connection, db_dsn: str
) -> None:
    await _write(pool, 12)
    await audit.seal(pool, KEY)
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
    await audit.seal(pool, KEY)
    await db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_guard")
    await db.execute("DELETE FROM audit_log WHERE seq = 3")
    await db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_guard")
    result = await audit.verify(db, KEY)
    assert not result.ok and result.broken_seq == 3 and "missing" in result.reason


async def test_sealed_rows_cannot_be_changed_even_through_the_sealing_grant(pool: asyncpg.Pool) -> None:
    await _write(pool, 2)
    await audit.seal(pool, KEY)
    with pytest.raises(asyncpg.RaiseError, match="sealed"):
        async with transaction(pool, Identity(role="system")) as conn:
            await conn.execute("UPDATE audit_log SET hash = 'x' WHERE seq = 1")


def _sha256_chain(prev: bytes, seq: int, row: asyncpg.Record) -> bytes:
    """The old unkeyed digest, as an attacker with the source code but not the key computes it."""
    body = audit._encoder.encode(
        [
            seq,
            row["id"],
            row["at"].isoformat(),
            row["actor_role"],
            row["actor_id"],
            row["partner_id"],
            row["action"],
            row["target_type"],
            row["target_id"],
            row["detail_text"],
        ]
    )
    return hashlib.sha256(prev + body).digest()


async def _delete_and_recompute(db: asyncpg.Connection, seq: int, digest: object) -> None:
    """What the finding's superuser did: drop a row, renumber the rest and recompute every link."""
    await db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_guard")
    if seq:  # 0: recompute only
        await db.execute("DELETE FROM audit_log WHERE seq = $1", seq)
        await db.execute("UPDATE audit_log SET seq = seq - 1 WHERE seq > $1", seq)
    rows = await db.fetch(
        "SELECT id, at, actor_role, actor_id, partner_id, action, target_type, target_id,"
        " detail::text AS detail_text, seq FROM audit_log WHERE seq IS NOT NULL ORDER BY seq"
    )
    prev = b"\x00" * 32
    for row in rows:
        h = digest(prev, row["seq"], row)  # type: ignore[operator]
        await db.execute("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE id = $3", prev, h, row["id"])
        prev = h
    await db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_guard")


@pytest.mark.parametrize("attacker_digest", ["sha256", "hmac_with_a_guessed_key"])
async def test_a_superuser_who_deletes_a_row_and_recomputes_the_chain_is_caught(
    pool: asyncpg.Pool, db: asyncpg.Connection, db_dsn: str, tmp_path: Path, attacker_digest: str
) -> None:
    anchors = tmp_path / "anchors.log"
    await _write(pool, 6)
    await audit.seal(pool, KEY, anchors=anchors)
    await _write(pool, 6)
    await audit.seal(pool, KEY, anchors=anchors)
    assert [a.seq for a in audit.read_anchors(anchors)] == [6, 12]
    ok = _cli_verify(db_dsn, anchors)
    assert ok.returncode == 0 and "2 of 2 anchor(s)" in ok.stdout, ok.stdout + ok.stderr

    def guessed(prev: bytes, seq: int, row: asyncpg.Record) -> bytes:
        return audit._digest(b"not-the-key", prev, seq, row)

    await _delete_and_recompute(db, 4, _sha256_chain if attacker_digest == "sha256" else guessed)
    bad = _cli_verify(db_dsn, anchors)
    assert bad.returncode == 1, bad.stdout
    # Recomputed from the genesis, so the very first row no longer carries its keyed hash.
    assert "BROKEN at seq 1 " in bad.stdout and "keyed hash" in bad.stdout, bad.stdout
    result = await audit.verify(db, KEY, audit.read_anchors(anchors))
    assert not result.ok


async def test_a_recomputed_chain_that_keeps_early_rows_breaks_at_the_deleted_one(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    """Even knowing the key of the first rows' era is not needed to find the spot: the keyed hash fails
    exactly where the attacker's recomputation starts to differ (rows before it keep their real hashes)."""
    await _write(pool, 8)
    await audit.seal(pool, KEY)
    # A careful attacker keeps rows 1..4 as they are and recomputes only from the deleted row on.
    await db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_guard")
    await db.execute("DELETE FROM audit_log WHERE seq = 5")
    await db.execute("UPDATE audit_log SET seq = seq - 1 WHERE seq > 5")
    prev = bytes(await db.fetchval("SELECT hash FROM audit_log WHERE seq = 4"))
    rows = await db.fetch(
        "SELECT id, at, actor_role, actor_id, partner_id, action, target_type, target_id,"
        " detail::text AS detail_text, seq FROM audit_log WHERE seq >= 5 ORDER BY seq"
    )
    for row in rows:
        h = _sha256_chain(prev, row["seq"], row)
        await db.execute("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE id = $3", prev, h, row["id"])
        prev = h
    await db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_guard")
    result = await audit.verify(db, KEY)
    assert not result.ok and result.broken_seq == 5 and "keyed hash" in result.reason, result


async def test_rows_cut_from_the_end_are_missed_by_the_anchor_file(
    pool: asyncpg.Pool, db: asyncpg.Connection, db_dsn: str, tmp_path: Path
) -> None:
    """No recomputation needed to drop the newest rows (the chain stays consistent): only the anchor,
    outside the database, still knows how long the chain was."""
    anchors = tmp_path / "anchors.log"
    await _write(pool, 5)
    await audit.seal(pool, KEY, anchors=anchors)
    await _write(pool, 3)
    await audit.seal(pool, KEY, anchors=anchors)
    await db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_guard")
    await db.execute("DELETE FROM audit_log WHERE seq > 5")
    await db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_guard")
    assert (await audit.verify(db, KEY)).ok  # without the anchors the cut is invisible
    bad = _cli_verify(db_dsn, anchors)
    assert bad.returncode == 1, bad.stdout
    assert "sealed rows 6..8 are missing" in bad.stdout, bad.stdout


def test_verify_without_a_key_says_so(db_dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFNET_")}
    env["REFNET_DATABASE_URL"] = db_dsn
    proc = subprocess.run(
        [sys.executable, "-m", "refnet.cli", "audit", "verify", "--data-dir", "/nonexistent"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2 and "no audit key" in proc.stderr, proc.stdout + proc.stderr


async def test_a_chain_sealed_before_the_key_is_pinned_by_the_first_keyed_sealing(
    pool: asyncpg.Pool, db: asyncpg.Connection, tmp_path: Path
) -> None:
    """An install upgraded from the unkeyed chain: its old rows keep verifying (by the old digest, up to the
    head the first keyed sealer anchors), new rows are keyed, and the old part cannot be rewritten either."""
    anchors = tmp_path / "anchors.log"
    await _write(pool, 4)
    await audit.seal(pool, KEY)
    await _delete_and_recompute(
        db, 0, _sha256_chain
    )  # recompute only: what the old sealer wrote: the same rows, unkeyed
    assert not (await audit.verify(db, KEY)).ok
    await _write(pool, 3)
    await audit.seal(pool, KEY, anchors=anchors)
    pinned = audit.read_anchors(anchors)
    assert [(a.seq, a.legacy) for a in pinned] == [(4, True), (7, False)]
    result = await audit.verify(db, KEY, pinned)
    assert result.ok and result.checked == 7 and result.anchors_checked == 2, result
    # Rewriting the old part now (dropping row 2, recomputing the unkeyed links) misses the pinned head.
    await db.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_guard")
    await db.execute("DELETE FROM audit_log WHERE seq = 2")
    await db.execute("UPDATE audit_log SET seq = seq - 1 WHERE seq > 2")
    rows = await db.fetch(
        "SELECT id, at, actor_role, actor_id, partner_id, action, target_type, target_id,"
        " detail::text AS detail_text, seq FROM audit_log WHERE seq <= 3 ORDER BY seq"
    )
    prev = b"\x00" * 32
    for row in rows:
        h = _sha256_chain(prev, row["seq"], row)
        await db.execute("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE id = $3", prev, h, row["id"])
        prev = h
    await db.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_guard")
    assert not (await audit.verify(db, KEY, pinned)).ok


@pytest.mark.filterwarnings(
    "ignore::DeprecationWarning"
)  # litestar's, at app creation (not ours to fix here)
async def test_production_intake_refuses_to_start_without_an_audit_key(db_dsn: str) -> None:
    """Sealing needs the key: in production intake does not start (and so accepts nothing) without one."""
    import base64

    from litestar.testing import AsyncTestClient

    from services.intake.app import create_app
    from shared.config import load_settings

    settings = load_settings(
        {},
        environment="production",
        database_url=service_dsn(db_dsn),
        secret_key="x" * 40,
        pii_master_key=base64.b64encode(b"k" * 32).decode(),
        data_dir="/dev/null/refnet",  # nowhere to keep a generated key
        metrics_port=0,
    )
    with pytest.raises((OSError, BaseExceptionGroup)) as info:
        async with AsyncTestClient(create_app(settings)):
            pass

    def leaves(exc: BaseException) -> list[BaseException]:
        inner = getattr(exc, "exceptions", None)
        return [x for e in inner for x in leaves(e)] if inner else [exc]

    assert any(isinstance(e, OSError) and "refnet/secrets" in str(e) for e in leaves(info.value)), info.value
