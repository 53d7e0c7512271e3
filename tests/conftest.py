"""Session fixtures: one embedded PostgreSQL with a migrated template database cloned per test."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from refnet_dev.demo import seed_demo
from refnet_dev.embedded import EmbeddedPostgres
from shared.migrate import apply_migrations

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")
TEMPLATE = "refnet_template"
_counter = itertools.count()


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """Like pytest's, but outside its 0700 base dir so the embedded server's system user can enter it."""
    path = Path(tempfile.mkdtemp(prefix="refnet-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    # Not under pytest's tmp dir: pytest re-chmods its base to 0700 at every session start, and the
    # server runs as an unprivileged system user that must traverse the path.
    root = Path(tempfile.mkdtemp(prefix="refnet-test-pg-"))
    pg = EmbeddedPostgres(root, fast=True)
    pg.start()
    try:
        asyncio.run(_make_template(pg))
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


async def _make_template(pg: EmbeddedPostgres) -> None:
    conn = await asyncpg.connect(pg.uri())
    try:
        await conn.execute(f"CREATE DATABASE {TEMPLATE}")
    finally:
        await conn.close()
    await apply_migrations(pg.uri(TEMPLATE))


async def clone_database(
    pg: EmbeddedPostgres, prefix: str = "t", template: str = TEMPLATE, name: str = ""
) -> str:
    name = name or f"{prefix}_{os.getpid()}_{next(_counter)}"
    conn = await asyncpg.connect(pg.uri())
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await conn.close()
    return pg.uri(name)


@pytest.fixture
async def db_dsn(pg_server: EmbeddedPostgres) -> str:
    """A fresh migrated database for one test."""
    return await clone_database(pg_server)


@pytest.fixture
async def db(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(db_dsn)
    yield conn
    await conn.close()


SEEDED_TEMPLATE = "refnet_seeded"


@pytest.fixture(scope="session")
def seeded_template(pg_server: EmbeddedPostgres) -> dict[str, Any]:
    """A second template with the demo network seeded once (argon2 hashing is deliberately slow)."""

    async def make() -> dict[str, Any]:
        dsn = await clone_database(pg_server, name=SEEDED_TEMPLATE)
        conn = await asyncpg.connect(dsn)
        try:
            return await seed_demo(conn, "http://test")
        finally:
            await conn.close()

    return asyncio.run(make())


@pytest.fixture
async def seeded_db(
    pg_server: EmbeddedPostgres, seeded_template: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """A fresh database holding the demo network, and its credentials."""
    return await clone_database(pg_server, "s", SEEDED_TEMPLATE), seeded_template


@pytest.fixture(scope="module")
def platform(
    pg_server: EmbeddedPostgres, seeded_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The three services as processes on a seeded database and their own NATS, shared by a module."""
    from tests.support.platform import running_platform

    dsn = asyncio.run(clone_database(pg_server, "p", SEEDED_TEMPLATE))
    with running_platform(dsn, tmp_path_factory.mktemp("platform"), seeded_template) as plat:
        yield plat


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    root = Path(__file__).parent
    for item in items:
        if (root / "e2e") in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)
