"""Apply numbered ``shared/migrations/NNNN_name.sql`` files once each, in order, under an advisory lock."""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path

import asyncpg
import msgspec

__all__ = ["Migration", "MigrationError", "apply_migrations", "available_migrations"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it keeps two processes (two `refnet up`, or tests) from migrating at once.
_LOCK_ID = 0x7265666E6574


class MigrationError(Exception):
    pass


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations(directory: Path | None = None) -> list[Migration]:
    root = directory if directory is not None else resources.files("shared").joinpath("migrations")
    found: list[Migration] = []
    for entry in root.iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
        elif entry.name.endswith(".sql"):
            # A misnamed file would silently never run.
            raise MigrationError(f"migration file {entry.name!r} does not match NNNN_lower_snake_name.sql")
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migrations share a number")
    return found


async def apply_migrations(dsn: str, directory: Path | None = None) -> list[str]:
    """Apply pending migrations; return the names applied. Refuse if an applied file was edited."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_ID)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {
            r["version"]: r for r in await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        }
        done: list[str] = []
        for mig in available_migrations(directory):
            if mig.version in applied:
                if applied[mig.version]["checksum"] != mig.checksum:
                    raise MigrationError(
                        f"migration {mig.version:04d}_{mig.name} was changed after it was applied"
                    )
                continue
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    mig.version,
                    mig.name,
                    mig.checksum,
                )
            done.append(f"{mig.version:04d}_{mig.name}")
        return done
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_ID)
        finally:
            await conn.close()
