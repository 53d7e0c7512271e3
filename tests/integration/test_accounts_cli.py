"""`refnet staff ...` and `refnet partners ...` (issue 14): one JSON object on stdout, one-time passwords,
deactivation, resets, audited; against REFNET_DATABASE_URL and against a --data-dir whose `refnet up` is
not running (the command starts the embedded server for itself and stops it again)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncpg

from refnet_dev.embedded import EmbeddedPostgres
from shared.credentials import hash_api_key, verify_password
from shared.migrate import apply_migrations
from tests.support.platform import ROOT


def _cli(*args: str, dsn: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFNET_")}
    if dsn:
        env["REFNET_DATABASE_URL"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "refnet.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _one_json(r: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1, r.stdout
    doc = json.loads(lines[0])
    assert isinstance(doc, dict)
    return doc


async def test_staff_and_partners_from_the_command_line(db_dsn: str) -> None:
    conn = await asyncpg.connect(db_dsn)
    try:
        made = _one_json(
            _cli(
                "staff",
                "create",
                "--email",
                "First.Admin@agency.test",
                "--role",
                "admin",
                "--name",
                "Ada",
                dsn=db_dsn,
            )
        )
        assert set(made) == {"id", "email", "role", "password"} and made["role"] == "admin"
        row = await conn.fetchrow("SELECT * FROM staff WHERE id = $1", made["id"])
        assert row is not None
        assert row["password_change_required"] and verify_password(
            row["password_hash"], str(made["password"])
        )

        partner = _one_json(_cli("partners", "create", "--name", "Eastside Drop-in", dsn=db_dsn))
        assert set(partner) == {"id", "name", "api_key"}
        assert (
            await conn.fetchval(
                "SELECT partner_id::text FROM api_keys WHERE key_hash = $1",
                hash_api_key(str(partner["api_key"])),
            )
            == partner["id"]
        )
        user = _one_json(
            _cli(
                "staff",
                "create",
                "--email",
                "desk@eastside.test",
                "--role",
                "partner_user",
                "--partner",
                str(partner["id"]),
                dsn=db_dsn,
            )
        )
        assert (
            await conn.fetchval("SELECT partner_id::text FROM staff WHERE id = $1", user["id"])
            == partner["id"]
        )

        # A partner user needs a partner; a supervisor a region: refused on stderr, nothing on stdout.
        bad = _cli("staff", "create", "--email", "x@y.test", "--role", "partner_user", dsn=db_dsn)
        assert bad.returncode != 0 and bad.stdout == "" and "partner" in bad.stderr
        bad = _cli(
            "staff", "create", "--email", "s@y.test", "--role", "supervisor", "--regions", "mars", dsn=db_dsn
        )
        assert bad.returncode != 0 and "mars" in bad.stderr

        reset = _one_json(_cli("staff", "reset-password", "--email", "first.admin@agency.test", dsn=db_dsn))
        assert set(reset) == {"email", "password"} and reset["password"] != made["password"]
        row = await conn.fetchrow("SELECT * FROM staff WHERE id = $1", made["id"])
        assert row is not None
        assert verify_password(row["password_hash"], str(reset["password"])) and row["token_version"] == 1

        gone = _one_json(_cli("staff", "deactivate", "--email", "First.Admin@agency.test", dsn=db_dsn))
        assert gone["active"] is False
        assert await conn.fetchval("SELECT deactivated_at IS NOT NULL FROM staff WHERE id = $1", made["id"])
        missing = _cli("staff", "deactivate", "--email", "nobody@agency.test", dsn=db_dsn)
        assert missing.returncode != 0 and "nobody@agency.test" in missing.stderr

        actions = {
            (r["action"], r["actor_id"])
            for r in await conn.fetch(
                "SELECT action, actor_id FROM audit_log WHERE target_id = ANY($1::text[])",
                [made["id"], partner["id"], user["id"]],
            )
        }
        assert {
            ("staff.create", "cli"),
            ("staff.reset_password", "cli"),
            ("staff.deactivate", "cli"),
            ("partner.create", "cli"),
        } <= actions
    finally:
        await conn.close()


def test_first_admin_on_a_stopped_data_dir() -> None:
    """A --no-demo install is stopped: the command starts its database, makes the admin, stops it."""
    root = Path(tempfile.mkdtemp(prefix="refnet-accounts-cli-"))
    pg = EmbeddedPostgres(root / "postgres", fast=True)
    try:
        import asyncio

        asyncio.run(apply_migrations(pg.start()))
        pg.stop()
        assert not pg.is_running()
        made = _one_json(
            _cli("staff", "create", "--data-dir", str(root), "--email", "boss@agency.test", "--role", "admin")
        )
        assert made["email"] == "boss@agency.test" and len(str(made["password"])) >= 12
        assert not pg.is_running()
    finally:
        if pg.is_running():
            pg.stop()
        shutil.rmtree(root, ignore_errors=True)
