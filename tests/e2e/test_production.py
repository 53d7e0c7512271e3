"""A production install serves: `refnet serve intake|routing|notify` with refnet_dev, bench and the embedded
servers' packages unimportable (tests/support/without_dev.py), against the test PostgreSQL and a
nats-server. /readyz answers 200 and a referral flows through all three: 201, assigned, notified."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from refnet_dev.embedded import EmbeddedPostgres
from tests.conftest import SEEDED_TEMPLATE, clone_database
from tests.support.platform import Platform, referral_body, running_platform, wait_for
from tests.support.without_dev import BANNER, DEV_PART


@pytest.fixture(scope="module")
def production(
    pg_server: EmbeddedPostgres, seeded_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    dsn = asyncio.run(clone_database(pg_server, "prod", SEEDED_TEMPLATE))
    wrapper = (sys.executable, "-m", "tests.support.without_dev")
    with running_platform(
        dsn, tmp_path_factory.mktemp("production"), seeded_template, command=wrapper
    ) as plat:
        yield plat


def _first_line(path: Path | None) -> str:
    assert path is not None
    with path.open(errors="replace") as fh:
        return fh.readline().strip()


async def test_services_serve_without_the_development_part(production: Platform) -> None:
    # Each service process ran behind the import blocker (its banner is the first line it wrote).
    for key in ("intake", "routing", "notify"):
        assert _first_line(production.procs[key].log_path) == f"{BANNER} {','.join(DEV_PART)}"
    production.check_alive()

    async with httpx.AsyncClient(base_url=production.base_url, timeout=10) as client:
        assert (await client.get("/readyz")).status_code == 200
        auth = {"Authorization": f"Bearer {production.partner_key(0)}"}
        r = await client.post("/v1/referrals", json=referral_body(), headers=auth)
        assert r.status_code == 201, r.text
        rid = r.json()["id"]

        async def assigned() -> bool:
            got = await client.get(f"/v1/referrals/{rid}", headers=auth)
            return bool(got.json()["status"] == "assigned")

        await wait_for(assigned, timeout=20)

    conn = await asyncpg.connect(production.dsn)
    try:

        async def notified() -> int:
            return int(
                await conn.fetchval(
                    "SELECT count(*) FROM notifications n JOIN assignments a ON a.id = n.assignment_id"
                    " WHERE a.referral_id = $1 AND n.channel = 'inapp' AND n.recipient_id = a.case_manager_id",
                    rid,
                )
            )

        assert await wait_for(notified, timeout=20) == 1
    finally:
        await conn.close()
    production.check_alive()
