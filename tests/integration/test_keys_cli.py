"""Operator CLI: master-key rotation re-wraps every data key; partner API keys are created, rotated, revoked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from shared.crypto import KeyRing, KeyringDoc, generate_master_key, read_keyring_file, write_keyring_file
from tests.support.platform import ROOT


def _cli(dsn: str, *args: str, **env_extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFNET_")}
    env.update({"REFNET_DATABASE_URL": dsn, **env_extra})
    return subprocess.run(
        [sys.executable, "-m", "refnet.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_rotate_rewraps_every_data_key(seeded_db: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    dsn, creds = seeded_db
    path = tmp_path / "keyring.json"
    write_keyring_file(path, KeyringDoc(current="k1", keys={"k1": generate_master_key()}))
    ring = KeyRing(read_keyring_file(path).keys, "k1")
    conn = await asyncpg.connect(dsn)
    try:
        ids = []
        for _ in range(5):
            rid = str(uuid.uuid4())
            sealed = ring.seal(b'{"youth": {"first_name": "Q"}}', rid.encode())
            await conn.execute(
                "INSERT INTO referrals (id, partner_id, status, needs, urgency, age_years)"
                " VALUES ($1, $2, 'received', '{housing}', 'routine', 15)",
                rid,
                creds["partners"][0]["id"],
            )
            await conn.execute(
                "INSERT INTO referral_keys (referral_id, partner_id, key_id, wrapped_key) VALUES ($1, $2, $3, $4)",
                rid,
                creds["partners"][0]["id"],
                sealed.key_id,
                sealed.wrapped_key,
            )
            await conn.execute(
                "INSERT INTO referral_pii (referral_id, partner_id, nonce, ciphertext) VALUES ($1, $2, $3, $4)",
                rid,
                creds["partners"][0]["id"],
                sealed.nonce,
                sealed.ciphertext,
            )
            ids.append(rid)
        r = _cli(dsn, "keys", "rotate", "--retire", REFNET_PII_KEYRING_FILE=str(path))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "re-wrapped 5 data key(s)" in r.stdout
        doc = read_keyring_file(path)
        assert doc.current == "k2" and sorted(doc.keys) == ["k2"]  # k1 retired: nothing uses it
        assert oct(path.stat().st_mode & 0o777) == "0o600"
        new_ring = KeyRing(doc.keys, doc.current)
        from shared.crypto import Sealed

        for rid in ids:
            row = await conn.fetchrow(
                "SELECT k.key_id, k.wrapped_key, p.nonce, p.ciphertext FROM referral_keys k"
                " JOIN referral_pii p USING (referral_id) WHERE referral_id = $1",
                rid,
            )
            assert row is not None
            assert row["key_id"] == "k2"
            opened = new_ring.open(
                Sealed(
                    row["key_id"], bytes(row["wrapped_key"]), bytes(row["nonce"]), bytes(row["ciphertext"])
                ),
                rid.encode(),
            )
            assert json.loads(opened)["youth"]["first_name"] == "Q"
        assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'keys.rotate'") == 1
    finally:
        await conn.close()


async def test_apikeys_create_rotate_revoke(seeded_db: tuple[str, dict[str, Any]]) -> None:
    dsn, creds = seeded_db
    pid = creds["partners"][3]["id"]
    made = _cli(dsn, "apikeys", "create", "--partner", pid, "--label", "ehr-integration")
    assert made.returncode == 0, made.stderr
    new = json.loads(made.stdout)
    assert new["api_key"].startswith("rnk_") and new["partner_id"] == pid
    rotated = json.loads(_cli(dsn, "apikeys", "rotate", new["id"], "--grace-hours", "1").stdout)
    assert rotated["id"] != new["id"] and rotated["label"] == "ehr-integration"
    listed = json.loads(_cli(dsn, "apikeys", "list", "--partner", pid).stdout)
    by_id = {k["id"]: k for k in listed}
    assert by_id[new["id"]]["active"] and by_id[new["id"]]["expires_at"] is not None  # overlap window
    revoked = json.loads(_cli(dsn, "apikeys", "revoke", rotated["id"], "--reason", "leaked").stdout)
    assert revoked["active"] is False
    missing = _cli(dsn, "apikeys", "revoke", str(uuid.uuid4()))
    assert missing.returncode != 0 and "no such key" in missing.stderr + missing.stdout
    conn = await asyncpg.connect(dsn)
    try:
        # Only digests are stored, never the keys.
        stored = await conn.fetch("SELECT key_hash FROM api_keys WHERE partner_id = $1", pid)
        assert all(new["api_key"].encode() not in bytes(r["key_hash"]) for r in stored)
        assert (
            await conn.fetchval("SELECT count(*) FROM audit_log WHERE action LIKE 'apikey.%'") == 4
        )  # create, create+rotate, revoke
    finally:
        await conn.close()
