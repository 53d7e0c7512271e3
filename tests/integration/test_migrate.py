"""The migration runner on real, empty databases: apply once, refuse edits, serialise concurrent runs."""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path

import asyncpg
import pytest

from refnet_dev.embedded import EmbeddedPostgres
from shared.migrate import NO_TRANSACTION, MigrationError, apply_migrations, available_migrations

_counter = itertools.count()


async def _fresh_database(pg: EmbeddedPostgres) -> str:
    """A brand-new empty database (from template0, not the migrated test template)."""
    name = f"mig_{os.getpid()}_{next(_counter)}"
    conn = await asyncpg.connect(pg.uri())
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
    finally:
        await conn.close()
    return pg.uri(name)


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


_ADVISORY_LOCKS = (
    "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory'"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


async def _tables(dsn: str) -> set[str]:
    rows = await _fetch(dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


def _write(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql)
    return directory


@pytest.fixture
async def empty_db(pg_server: EmbeddedPostgres) -> str:
    return await _fresh_database(pg_server)


# -- the project's migrations ----------------------------------------------------------------------------


async def test_applies_all_then_nothing(empty_db: str) -> None:
    assert await _tables(empty_db) == set()
    expected = [f"{m.version:04d}_{m.name}" for m in available_migrations()]
    assert expected, "no migrations found in the package"

    assert await apply_migrations(empty_db) == expected
    rows = await _fetch(empty_db, "SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    assert [f"{r['version']:04d}_{r['name']}" for r in rows] == expected
    assert [r["checksum"] for r in rows] == [m.checksum for m in available_migrations()]
    tables = await _tables(empty_db)
    assert {"referrals", "outbox", "schema_migrations"} <= tables

    # Idempotent: a second (and third) run applies nothing and changes nothing.
    assert await apply_migrations(empty_db) == []
    assert await apply_migrations(empty_db) == []
    assert await _tables(empty_db) == tables
    assert len(await _fetch(empty_db, "SELECT 1 FROM schema_migrations")) == len(expected)


async def test_migrations_are_numbered_and_ordered() -> None:
    migrations = available_migrations()
    versions = [m.version for m in migrations]
    assert versions == sorted(versions)
    assert len(set(versions)) == len(versions)
    assert versions[0] == 1


async def test_lock_is_released_after_a_run(empty_db: str) -> None:
    await apply_migrations(empty_db)
    rows = await _fetch(empty_db, _ADVISORY_LOCKS)
    assert rows[0]["n"] == 0


# -- a scratch directory of migrations ---------------------------------------------------------------------


async def test_changed_checksum_is_refused(empty_db: str, tmp_path: Path) -> None:
    d = _write(
        tmp_path / "m",
        {
            "0001_first.sql": "CREATE TABLE first_t (id integer PRIMARY KEY);",
            "0002_second.sql": "CREATE TABLE second_t (id integer PRIMARY KEY);",
        },
    )
    assert await apply_migrations(empty_db, d) == ["0001_first", "0002_second"]

    (d / "0001_first.sql").write_text("CREATE TABLE first_t (id bigint PRIMARY KEY);")
    (d / "0003_third.sql").write_text("CREATE TABLE third_t (id integer);")
    with pytest.raises(MigrationError, match="0001_first"):
        await apply_migrations(empty_db, d)
    # Nothing after the refusal ran.
    assert "third_t" not in await _tables(empty_db)

    # Restoring the original text makes the directory acceptable again.
    (d / "0001_first.sql").write_text("CREATE TABLE first_t (id integer PRIMARY KEY);")
    assert await apply_migrations(empty_db, d) == ["0003_third"]


async def test_whitespace_only_edit_is_still_a_change(empty_db: str, tmp_path: Path) -> None:
    d = _write(tmp_path / "m", {"0001_a.sql": "CREATE TABLE a (id integer);"})
    await apply_migrations(empty_db, d)
    (d / "0001_a.sql").write_text("CREATE TABLE a (id integer);\n")
    with pytest.raises(MigrationError):
        await apply_migrations(empty_db, d)


async def test_new_migrations_apply_in_numeric_order(empty_db: str, tmp_path: Path) -> None:
    d = _write(
        tmp_path / "m",
        {
            "0010_later.sql": "INSERT INTO log_t VALUES ('0010');",
            "0002_create.sql": "CREATE TABLE log_t (v text, at serial);",
            "0003_mid.sql": "INSERT INTO log_t VALUES ('0003');",
            "README.md": "not a migration",
        },
    )
    assert await apply_migrations(empty_db, d) == ["0002_create", "0003_mid", "0010_later"]
    rows = await _fetch(empty_db, "SELECT v FROM log_t ORDER BY at")
    assert [r["v"] for r in rows] == ["0003", "0010"]


async def test_failed_migration_rolls_back_and_is_not_recorded(empty_db: str, tmp_path: Path) -> None:
    d = _write(
        tmp_path / "m",
        {
            "0001_ok.sql": "CREATE TABLE ok_t (id integer);",
            "0002_bad.sql": "CREATE TABLE half_t (id integer); SELECT no_such_function();",
        },
    )
    with pytest.raises(asyncpg.PostgresError):
        await apply_migrations(empty_db, d)
    assert await _tables(empty_db) == {"ok_t", "schema_migrations"}
    rows = await _fetch(empty_db, "SELECT version FROM schema_migrations")
    assert [r["version"] for r in rows] == [1]

    (d / "0002_bad.sql").write_text("CREATE TABLE half_t (id integer);")
    assert await apply_migrations(empty_db, d) == ["0002_bad"]
    # The lock was released after the failure, or this second run would have hung.
    rows = await _fetch(empty_db, _ADVISORY_LOCKS)
    assert rows[0]["n"] == 0


async def test_duplicate_numbers_are_refused(tmp_path: Path) -> None:
    d = _write(tmp_path / "m", {"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 2;"})
    with pytest.raises(MigrationError, match="share a number"):
        available_migrations(d)


async def test_empty_directory_applies_nothing(empty_db: str, tmp_path: Path) -> None:
    d = _write(tmp_path / "m", {})
    assert await apply_migrations(empty_db, d) == []
    assert await _tables(empty_db) == {"schema_migrations"}


# -- concurrency -----------------------------------------------------------------------------------------


async def test_concurrent_runs_do_not_fail(empty_db: str) -> None:
    expected = [f"{m.version:04d}_{m.name}" for m in available_migrations()]
    results = await asyncio.wait_for(
        asyncio.gather(apply_migrations(empty_db), apply_migrations(empty_db)), timeout=60
    )
    # Exactly one run applied everything; the other waited for the lock and found nothing to do.
    assert sorted(results, key=len) == [[], expected]
    rows = await _fetch(empty_db, "SELECT count(*) AS n FROM schema_migrations")
    assert rows[0]["n"] == len(expected)


async def test_many_concurrent_runs_with_a_slow_migration(empty_db: str, tmp_path: Path) -> None:
    """A slow migration widens the race window: without the lock, a second runner would re-apply it."""
    d = _write(
        tmp_path / "m",
        {
            "0001_slow.sql": "SELECT pg_sleep(0.3); CREATE TABLE once_t (id integer);",
            "0002_count.sql": "CREATE TABLE runs_t (id serial); INSERT INTO runs_t DEFAULT VALUES;",
        },
    )
    results = await asyncio.wait_for(
        asyncio.gather(*(apply_migrations(empty_db, d) for _ in range(4))), timeout=60
    )
    assert sorted(results, key=len) == [[], [], [], ["0001_slow", "0002_count"]]
    rows = await _fetch(empty_db, "SELECT count(*) AS n FROM runs_t")
    assert rows[0]["n"] == 1


# -- migrations outside a transaction ---------------------------------------------------------------------

_TABLE = "CREATE TABLE items_t (id integer PRIMARY KEY, code text, n integer);"
_VALID_INDEXES = (
    "SELECT c.relname AS name, i.indisvalid AS valid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
    " WHERE i.indrelid = 'items_t'::regclass AND NOT i.indisprimary ORDER BY 1"
)


async def test_no_transaction_migration_builds_indexes_concurrently(empty_db: str, tmp_path: Path) -> None:
    d = _write(
        tmp_path / "m",
        {
            "0001_table.sql": _TABLE,
            "0002_indexes.sql": f"{NO_TRANSACTION}\n-- Two indexes; a semicolon in a comment; is not a statement.\n"
            "CREATE INDEX CONCURRENTLY items_code ON items_t (code);\n"
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_n ON items_t (n) WHERE code <> 'a;b';\n",
        },
    )
    assert [m.transactional for m in available_migrations(d)] == [True, False]
    assert await apply_migrations(empty_db, d) == ["0001_table", "0002_indexes"]
    indexes = await _fetch(empty_db, _VALID_INDEXES)
    assert [(r["name"], r["valid"]) for r in indexes] == [("items_code", True), ("items_n", True)]
    rows = await _fetch(empty_db, "SELECT version, partial_statements FROM schema_migrations ORDER BY 1")
    assert [(r["version"], r["partial_statements"]) for r in rows] == [(1, None), (2, None)]
    assert await apply_migrations(empty_db, d) == []


async def test_without_the_marker_a_migration_runs_in_a_transaction(empty_db: str, tmp_path: Path) -> None:
    """The marker is what lets CONCURRENTLY run: without it the same file is refused by PostgreSQL."""
    d = _write(
        tmp_path / "m",
        {
            "0001_table.sql": _TABLE,
            "0002_index.sql": "CREATE INDEX CONCURRENTLY items_code ON items_t (code);",
        },
    )
    with pytest.raises(asyncpg.ActiveSQLTransactionError):
        await apply_migrations(empty_db, d)
    rows = await _fetch(empty_db, "SELECT version FROM schema_migrations")
    assert [r["version"] for r in rows] == [1]


async def test_interrupted_no_transaction_migration_refuses_then_resumes(
    empty_db: str, tmp_path: Path
) -> None:
    """A unique index over duplicates fails half-way and leaves an invalid index: the runner says which
    statement failed, refuses while the invalid index is there, then resumes at that statement (the
    first one, which would fail if it ran twice, is not repeated)."""
    d = _write(
        tmp_path / "m",
        {
            "0001_table.sql": _TABLE + " INSERT INTO items_t VALUES (1, 'x', 1), (2, 'x', 2);",
            "0002_indexes.sql": f"{NO_TRANSACTION}\n"
            "CREATE INDEX CONCURRENTLY items_n ON items_t (n);\n"
            "CREATE UNIQUE INDEX CONCURRENTLY items_code ON items_t (code);\n"
            "CREATE INDEX CONCURRENTLY items_both ON items_t (code, n);\n",
        },
    )
    with pytest.raises(MigrationError, match=r"0002_indexes: statement 2 of 3 failed"):
        await apply_migrations(empty_db, d)
    rows = await _fetch(empty_db, "SELECT version, partial_statements FROM schema_migrations ORDER BY 1")
    assert [(r["version"], r["partial_statements"]) for r in rows] == [(1, None), (2, 1)]
    indexes = await _fetch(empty_db, _VALID_INDEXES)
    assert [(r["name"], r["valid"]) for r in indexes] == [("items_code", False), ("items_n", True)]

    # Half-applied and an invalid index left: refused, naming it, nothing else runs.
    with pytest.raises(MigrationError, match=r"invalid indexes remain: items_code\b.*resume at statement 2"):
        await apply_migrations(empty_db, d)

    # Editing the half-applied file is refused like editing an applied one.
    original = (d / "0002_indexes.sql").read_text()
    (d / "0002_indexes.sql").write_text(original.replace("items_both", "items_other"))
    with pytest.raises(MigrationError, match="changed while half-applied"):
        await apply_migrations(empty_db, d)
    (d / "0002_indexes.sql").write_text(original)

    # The operator drops the invalid index and fixes the data: the run resumes at statement 2.
    conn = await asyncpg.connect(empty_db)
    try:
        await conn.execute("DROP INDEX CONCURRENTLY items_code")
        await conn.execute("UPDATE items_t SET code = 'y' WHERE id = 2")
    finally:
        await conn.close()
    assert await apply_migrations(empty_db, d) == ["0002_indexes"]
    indexes = await _fetch(empty_db, _VALID_INDEXES)
    assert [(r["name"], r["valid"]) for r in indexes] == [
        ("items_both", True),
        ("items_code", True),
        ("items_n", True),
    ]
    rows = await _fetch(empty_db, "SELECT partial_statements FROM schema_migrations WHERE version = 2")
    assert rows[0]["partial_statements"] is None
    assert await apply_migrations(empty_db, d) == []


async def test_0100_moves_every_blind_index_into_one_row_per_referral(empty_db: str, tmp_path: Path) -> None:
    # A database of 0099 with stored tokens (one row per token) upgrades to one row per referral with
    # every token in its column and the trigrams as a set; shredding then deletes the row.
    old = _write(
        tmp_path / "old", {f"{m.label}.sql": m.sql for m in available_migrations() if m.version < 100}
    )
    await apply_migrations(empty_db, old)
    full, bare = "6e3a8d8e-0000-4000-8000-000000000001", "6e3a8d8e-0000-4000-8000-000000000002"
    tokens = [
        (full, "dob", b"d1"),
        (full, "exact", b"e1"),
        (full, "phone", b"p1"),
        (full, "first", b"f1"),
        (full, "last", b"l1"),
        (full, "first_tri", b"t1"),
        (full, "first_tri", b"t2"),
        (full, "first_tri", b"t3"),
        (bare, "dob", b"d1"),
        (bare, "first", b"f2"),
    ]
    conn = await asyncpg.connect(empty_db)
    try:
        await conn.executemany(
            "INSERT INTO youth_tokens (referral_id, kind, token) VALUES ($1, $2, $3)", tokens
        )
    finally:
        await conn.close()
    assert await apply_migrations(empty_db) == [m.label for m in available_migrations() if m.version >= 100]
    rows = await _fetch(
        empty_db,
        "SELECT referral_id::text AS rid, dob, exact, phone, first, last,"
        " (SELECT array_agg(t ORDER BY t) FROM unnest(first_tri) AS t) AS tri FROM youth_blind ORDER BY 1",
    )
    assert [tuple(r.values()) for r in rows] == [
        (full, b"d1", b"e1", b"p1", b"f1", b"l1", [b"t1", b"t2", b"t3"]),
        (bare, b"d1", None, None, b"f2", None, None),  # no trigrams: '{}', whose unnest aggregates to NULL
    ]
    assert "youth_tokens" not in await _tables(empty_db)
