"""Apply numbered ``shared/migrations/NNNN_name.sql`` files once each, in order, under an advisory lock.

A migration runs in one transaction: it applies in full or not at all. One whose first line is
``-- refnet: no-transaction`` runs statement by statement outside any transaction instead, so it can
build indexes ``CONCURRENTLY`` without locking writers out. Each statement that takes effect is
counted in ``schema_migrations.partial_statements``; an interrupted run resumes after the last
counted statement, and refuses while a failed ``CREATE INDEX CONCURRENTLY`` has left an invalid
index behind (drop it, then migrate again). Write such statements to be safe to repeat
(``IF NOT EXISTS``): the one running when a process died may have taken effect uncounted.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path

import asyncpg
import msgspec
import sqlparse

from shared.db import load_sql

__all__ = ["NO_TRANSACTION", "Migration", "MigrationError", "apply_migrations", "available_migrations"]

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it keeps two processes (two `refnet up`, or tests) from migrating at once.
_LOCK_ID = 0x7265666E6574
# The first line of a migration that must run outside a transaction.
NO_TRANSACTION = "-- refnet: no-transaction"


class MigrationError(Exception):
    pass


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def transactional(self) -> bool:
        return self.sql.split("\n", 1)[0].rstrip() != NO_TRANSACTION

    def statements(self) -> list[str]:
        """The file's statements one by one (comments kept with the statement they precede); a
        multi-statement string would run as one implicit transaction, where CONCURRENTLY is refused."""
        return [s for s in sqlparse.split(self.sql) if sqlparse.format(s, strip_comments=True).strip()]


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
        await conn.execute(load_sql("shared", "migrate_lock"), _LOCK_ID)
        await conn.execute(load_sql("shared", "migrate_bootstrap"))
        applied = {r["version"]: r for r in await conn.fetch(load_sql("shared", "migrate_applied"))}
        done: list[str] = []
        for mig in available_migrations(directory):
            row = applied.get(mig.version)
            if row is not None and row["checksum"] != mig.checksum:
                state = (
                    "while half-applied" if row["partial_statements"] is not None else "after it was applied"
                )
                raise MigrationError(f"migration {mig.label} was changed {state}")
            if row is not None and row["partial_statements"] is None:
                continue
            if mig.transactional:
                async with conn.transaction():
                    await conn.execute(mig.sql)
                    await _record(conn, mig, None)
            else:
                await _apply_outside_transaction(conn, mig, row["partial_statements"] if row else None)
            done.append(mig.label)
        return done
    finally:
        try:
            await conn.execute(load_sql("shared", "migrate_unlock"), _LOCK_ID)
        finally:
            await conn.close()


async def _record(conn: asyncpg.Connection, mig: Migration, partial: int | None) -> None:
    await conn.execute(load_sql("shared", "migrate_record"), mig.version, mig.name, mig.checksum, partial)


async def _apply_outside_transaction(conn: asyncpg.Connection, mig: Migration, resume_at: int | None) -> None:
    statements = mig.statements()
    if resume_at is not None:
        invalid = [r["name"] for r in await conn.fetch(load_sql("shared", "migrate_invalid_indexes"))]
        if invalid:
            raise MigrationError(
                f"migration {mig.label} was interrupted after {resume_at} of its {len(statements)} statements"
                f" and invalid indexes remain: {', '.join(invalid)}. Drop them (DROP INDEX CONCURRENTLY ...),"
                f" then migrate again to resume at statement {resume_at + 1}."
            )
    start = resume_at or 0
    if resume_at is None:
        await _record(conn, mig, 0)
    for number, statement in enumerate(statements[start:], start=start + 1):
        try:
            await conn.execute(statement)
        except Exception as exc:
            raise MigrationError(
                f"migration {mig.label}: statement {number} of {len(statements)} failed"
                f" ({type(exc).__name__}: {exc}); the {number - 1} before it took effect (no transaction)."
                f" Fix the cause, then migrate again to resume at statement {number}."
            ) from exc
        await _record(conn, mig, number)
    await _record(conn, mig, None)
