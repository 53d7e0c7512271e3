"""Integration fixtures shared by modules: a superuser pool on the test's fresh seeded database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from shared.db import create_pool


@pytest.fixture
async def pool(seeded_db: tuple[str, dict[str, Any]]) -> AsyncIterator[asyncpg.Pool]:
    """The superuser's view of the seeded database, to arrange and inspect (row-level security does not
    apply). A module that needs another pool (the service role, an empty database) defines its own."""
    p = await create_pool(seeded_db[0], max_size=4)
    yield p
    await p.close()
