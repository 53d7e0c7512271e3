"""The embedded PostgreSQL lets nobody in without a password: not another OS user, not TCP, not the socket
owner without the passfile; and a production service refuses a role that reaches the server's files."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from refnet_dev.embedded import EmbeddedPostgres, free_port
from shared.config import Settings
from shared.db import create_pool, service_dsn
from shared.runtime import check_database_role


def _as_nobody(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run argv as the unprivileged OS user nobody, with no password in its environment."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to act as another OS user"
    env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C", "HOME": "/nonexistent"}
    return subprocess.run(
        [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=30,
        check=False,
    )


@pytest.fixture
def pg_tcp(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    pg = EmbeddedPostgres(tmp_path / "db", fast=True, tcp_port=free_port())
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


def test_data_dir_socket_and_passwords_are_private(pg_tcp: EmbeddedPostgres) -> None:
    for path in (pg_tcp.data_dir, pg_tcp.socket_dir):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    assert stat.S_IMODE(pg_tcp.passfile.stat().st_mode) == 0o600
    hba = (pg_tcp.pgdata / "pg_hba.conf").read_text()
    rules = [line.split() for line in hba.splitlines() if line.strip() and not line.startswith("#")]
    assert rules and all(rule[-1] == "scram-sha-256" for rule in rules), hba


@pytest.mark.skipif(os.geteuid() != 0, reason="acting as another OS user needs root")
def test_another_os_user_cannot_connect_by_socket_or_tcp(pg_tcp: EmbeddedPostgres) -> None:
    psql = str(pg_tcp.bin_dir / "psql")
    for role in ("postgres", "refnet_app"):
        by_socket = _as_nobody(
            [psql, "-w", "-h", str(pg_tcp.socket_dir), "-p", str(pg_tcp.port), "-U", role, "-c", "SELECT 1"]
        )
        assert by_socket.returncode != 0, by_socket.stdout
        by_tcp = _as_nobody(
            [
                psql,
                "-w",
                "-h",
                "127.0.0.1",
                "-p",
                str(pg_tcp.port),
                "-U",
                role,
                "-d",
                "postgres",
                "-c",
                "SELECT 1",
            ]
        )
        assert by_tcp.returncode != 0, by_tcp.stdout
        assert "password" in by_tcp.stderr, by_tcp.stderr  # refused for want of a password, not unreachable
        # The passfile is out of reach too, so naming it does not help.
        stolen = _as_nobody([psql, f"{pg_tcp.uri(user=role)}", "-w", "-c", "SELECT 1"])
        assert stolen.returncode != 0, stolen.stdout


async def test_no_password_no_entry_even_for_the_socket_owner(pg_tcp: EmbeddedPostgres) -> None:
    bare = (
        f"postgresql://postgres@/postgres?host={pg_tcp.socket_dir}&port={pg_tcp.port}&passfile=/nonexistent"
    )
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(bare)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(
            host="127.0.0.1", port=pg_tcp.port, user="postgres", password="wrong", database="postgres"
        )
    # The owner's URI (passfile) works; so does the service role's, which is not a superuser.
    conn = await asyncpg.connect(service_dsn(pg_tcp.uri()))
    try:
        assert await conn.fetchval("SELECT current_user") == "refnet_app"
        assert not await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("COPY (SELECT 1) TO PROGRAM 'true'")
    finally:
        await conn.close()


async def test_a_cluster_made_with_trust_is_locked_on_its_next_start(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "old", fast=True)
    pg.start()
    pg.stop()
    # What an older refnet left: trust on the socket and no passwords.
    (pg.pgdata / "pg_hba.conf").write_text("local all all trust\n")
    pg.passfile.unlink()
    pg.start()
    try:
        assert " trust" not in (pg.pgdata / "pg_hba.conf").read_text().split("\n", 1)[1]
        bare = f"postgresql://postgres@/postgres?host={pg.socket_dir}&port={pg.port}&passfile=/nonexistent"
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(bare)
        conn = await asyncpg.connect(pg.uri())
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
    finally:
        pg.stop()


@pytest.mark.parametrize(
    "grant", ["pg_read_server_files", "pg_execute_server_program", "pg_write_server_files"]
)
async def test_production_refuses_a_role_that_reaches_the_server(db_dsn: str, grant: str) -> None:
    role, password = f"refnet_t_{uuid.uuid4().hex[:10]}", uuid.uuid4().hex
    admin = await asyncpg.connect(db_dsn)
    await admin.execute(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS PASSWORD '{password}'")
    try:
        plain = service_dsn(db_dsn, role).split("?")[0] + "?" + db_dsn.split("?")[1].split("&passfile")[0]
        pool = await create_pool(plain.replace(f"{role}@", f"{role}:{password}@"), max_size=1)
        try:
            production = Settings(environment="production")
            await check_database_role(pool, production)  # a plain role passes
            await admin.execute(f"GRANT {grant} TO {role}")
            with pytest.raises(RuntimeError, match=grant):
                await check_database_role(pool, production)
            await check_database_role(pool, Settings())  # development: a warning only
        finally:
            await pool.close()
    finally:
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def test_production_refuses_a_superuser(db_dsn: str) -> None:
    pool = await create_pool(db_dsn, max_size=1)
    try:
        with pytest.raises(RuntimeError, match="bypasses row-level security"):
            await check_database_role(pool, Settings(environment="production"))
    finally:
        await pool.close()
