"""Shredding against disk forensics: after a shred and a rotation with destroy, the data key that survives in
WAL and heap pages is wrapped by a master key that exists nowhere; epochs go only once a backup allows it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.exceptions import InvalidTag

from refnet_dev.embedded import EmbeddedPostgres
from services.intake.cases.consent import shred
from services.intake.core import keyrotation
from shared.config import Settings
from shared.crypto import (
    KeyRing,
    KeyringDoc,
    Keys,
    Sealed,
    UnknownKeyError,
    generate_master_key,
    read_keyring_file,
    write_keyring_file,
)
from shared.db import SYSTEM, create_pool, service_dsn, transaction
from tests.support.platform import ROOT

PII = b'{"youth": {"first_name": "Zzyzxname", "phone": "+13105550199"}}'


def _cli(dsn: str, keyring: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFNET_")}
    env.update({"REFNET_DATABASE_URL": dsn, "REFNET_PII_KEYRING_FILE": str(keyring)})
    return subprocess.run(
        [sys.executable, "-m", "refnet.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def keyring(tmp_path: Path) -> Path:
    path = tmp_path / "pii_keyring.json"
    write_keyring_file(path, KeyringDoc(current="k1", keys={"k1": generate_master_key()}))
    return path


@pytest.fixture
async def pool(seeded_db: tuple[str, dict[str, Any]]) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(service_dsn(seeded_db[0]), max_size=2)
    yield p
    await p.close()


async def _referral(pool: asyncpg.Pool, ring: KeyRing, partner_id: str) -> tuple[str, bytes]:
    """A referral with sealed PII, as intake writes it; returns its id and its wrapped data key."""
    rid = str(uuid.uuid4())
    sealed = ring.seal(PII, rid.encode())
    async with transaction(pool, SYSTEM) as conn:
        await conn.execute(
            "INSERT INTO referrals (id, partner_id, status, needs, urgency, age_years)"
            " VALUES ($1, $2, 'received', '{housing}', 'routine', 15)",
            rid,
            partner_id,
        )
        await conn.execute(
            "INSERT INTO referral_keys (referral_id, partner_id, key_id, wrapped_key) VALUES ($1, $2, $3, $4)",
            rid,
            partner_id,
            sealed.key_id,
            sealed.wrapped_key,
        )
        await conn.execute(
            "INSERT INTO referral_pii (referral_id, partner_id, nonce, ciphertext) VALUES ($1, $2, $3, $4)",
            rid,
            partner_id,
            sealed.nonce,
            sealed.ciphertext,
        )
    return rid, sealed.wrapped_key


def _copies_on_disk(pgdata: Path, blob: bytes) -> list[str]:
    """Every file under PGDATA (heap, indexes, WAL, ...) that holds ``blob``."""
    found = []
    for root, _dirs, files in os.walk(pgdata):
        for name in files:
            path = Path(root, name)
            try:
                if blob in path.read_bytes():
                    found.append(str(path.relative_to(pgdata)))
            except OSError:
                continue
    return found


def _opens_with(ring_doc: KeyringDoc, wrapped: bytes, rid: str) -> bool:
    """Whether any master key of the keyring, whatever its id, unwraps ``wrapped``."""
    ring = KeyRing(ring_doc.keys, ring_doc.current)
    for key_id in ring.key_ids:
        try:
            ring.unwrap(key_id, wrapped, rid.encode())
            return True
        except (InvalidTag, UnknownKeyError):
            continue
    return False


async def test_a_shredded_data_key_left_in_wal_and_heap_opens_with_no_current_key(
    pg_server: EmbeddedPostgres,
    seeded_db: tuple[str, dict[str, Any]],
    pool: asyncpg.Pool,
    keyring: Path,
) -> None:
    dsn, creds = seeded_db
    partner = creds["partners"][0]["id"]
    ring = KeyRing(read_keyring_file(keyring).keys, "k1")
    shredded, shredded_blob = await _referral(pool, ring, partner)
    live, live_blob = await _referral(pool, ring, partner)

    async with transaction(pool, SYSTEM) as conn:
        ref = await conn.fetchrow("SELECT * FROM referrals WHERE id = $1 FOR UPDATE", shredded)
        assert ref is not None
        await shred(conn, ref, SYSTEM, "consent_withdrawn", withdraw_status=True)
    admin = await asyncpg.connect(dsn)
    try:
        assert (
            await admin.fetchval("SELECT count(*) FROM referral_keys WHERE referral_id = $1", shredded) == 0
        )
        await admin.execute("CHECKPOINT")
        # The finding: the shredded key is still on disk, and the keyring of that day opens it.
        assert _copies_on_disk(pg_server.pgdata, shredded_blob), "the test must see the surviving copy"
        assert _opens_with(read_keyring_file(keyring), shredded_blob, shredded)

        rotated = _cli(dsn, keyring, "keys", "rotate", "--destroy-previous")
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        assert "destroyed k1" in rotated.stdout, rotated.stdout
        await admin.execute("CHECKPOINT")

        doc = read_keyring_file(keyring)
        assert sorted(doc.keys) == ["k2"] and doc.current == "k2"
        for rid, blob in ((shredded, shredded_blob), (live, live_blob)):
            copies = _copies_on_disk(pg_server.pgdata, blob)
            assert copies, f"no copy of {rid}'s old wrapped key on disk: the scan would prove nothing"
            assert not _opens_with(doc, blob, rid), copies
        # The live referral was re-wrapped under k2 and still opens; the shredded one has nothing left.
        row = await admin.fetchrow(
            "SELECT k.key_id, k.wrapped_key, p.nonce, p.ciphertext FROM referral_keys k"
            " JOIN referral_pii p USING (referral_id) WHERE referral_id = $1",
            live,
        )
        assert row is not None and row["key_id"] == "k2"
        sealed = Sealed("k2", bytes(row["wrapped_key"]), bytes(row["nonce"]), bytes(row["ciphertext"]))
        assert KeyRing(doc.keys, "k2").open(sealed, live.encode()) == PII
        # A sealer still holding the destroyed key cannot write a referral nobody could open later.
        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="destroyed"):
            await _referral(pool, ring, partner)
        detail = await admin.fetchval(
            "SELECT detail FROM audit_log WHERE action = 'keys.rotate' ORDER BY id DESC LIMIT 1"
        )
        assert json.loads(detail)["destroyed"] == ["k1"]
    finally:
        await admin.close()


async def test_an_epoch_is_destroyed_only_once_a_backup_under_a_later_one_exists(
    seeded_db: tuple[str, dict[str, Any]], pool: asyncpg.Pool, keyring: Path
) -> None:
    dsn, creds = seeded_db
    ring = KeyRing(read_keyring_file(keyring).keys, "k1")
    await _referral(pool, ring, creds["partners"][0]["id"])
    keyrotation.record_backup(keyring, "/backups/monday.dump", {"k1"})

    first = _cli(dsn, keyring, "keys", "rotate", "--destroy-previous")
    assert first.returncode == 0, first.stderr
    assert "kept k1" in first.stdout and "; destroyed" not in first.stdout, first.stdout
    assert sorted(read_keyring_file(keyring).keys) == ["k1", "k2"]  # monday.dump stays restorable

    keyrotation.record_backup(keyring, "/backups/tuesday.dump", {"k2"})
    second = _cli(dsn, keyring, "keys", "rotate", "--destroy-previous")
    assert second.returncode == 0, second.stderr
    assert "destroyed k1" in second.stdout and "kept k2" in second.stdout, second.stdout
    assert sorted(read_keyring_file(keyring).keys) == ["k2", "k3"]  # tuesday.dump needs k2


async def test_the_daily_rotation_runs_in_the_service_and_sealers_follow_it(
    seeded_db: tuple[str, dict[str, Any]], pool: asyncpg.Pool, keyring: Path
) -> None:
    dsn, _ = seeded_db
    settings = Settings(pii_keyring_file=str(keyring))  # the default: every 24 hours
    keys = Keys(str(keyring), "", "k1")
    assert keys.ring.current == "k1"
    assert await keyrotation.rotate_if_due(pool, settings) is None  # the epoch's clock starts now
    assert await keyrotation.rotate_if_due(pool, settings) is None
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute("UPDATE pii_key_epochs SET created_at = now() - interval '25 hours'")
    finally:
        await admin.close()
    result = await keyrotation.rotate_if_due(pool, settings)
    assert result is not None and result.current == "k2" and result.destroyed == ["k1"]
    # A running intake (or notify) picks the new epoch up at its next use, without a restart.
    assert keys.ring.current == "k2" and keys.ring.key_ids == {"k2"}


def test_the_backup_rule() -> None:
    rec = keyrotation.BackupRecord
    assert keyrotation.destroyable(["k1", "k2"], []) == (["k1", "k2"], [])
    assert keyrotation.destroyable(["k1", "k2"], [rec("", "a", ["k1", "k2"])]) == ([], ["k1", "k2"])
    assert keyrotation.destroyable(["k1", "k2"], [rec("", "a", ["k1"]), rec("", "b", ["k2"])]) == (
        ["k1"],
        ["k2"],
    )
    assert keyrotation.destroyable(["k1", "k2"], [rec("", "a", [])]) == (["k1", "k2"], [])  # no PII in it
    assert keyrotation.destroyable(["k9", "k10"], [rec("", "a", ["k10"])]) == (["k9"], ["k10"])


def test_keys_of_the_same_second_are_told_apart(keyring: Path) -> None:
    # The file stamp includes the inode: write_keyring_file replaces the file, so even an update within
    # the file system's timestamp resolution is seen.
    keys = Keys(str(keyring), "", "k1")
    doc = read_keyring_file(keyring)
    doc.keys["k2"] = generate_master_key()
    doc.current = "k2"
    write_keyring_file(keyring, doc)
    assert keys.ring.current == "k2"
