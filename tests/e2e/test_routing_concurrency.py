"""Two routing workers (separate processes on one durable consumer) route 500 referrals at once, in
batches: each referral is offered once or queued, no case manager goes over capacity, and nothing that
could have been placed is left in the queue."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from refnet_dev.embedded import EmbeddedPostgres
from services.routing.engine import facts_for
from services.routing.policy import SPECIALISMS, Candidate, choose
from services.routing.rules import load_rules
from shared.codes import NEED_CODES
from shared.events import ReferralReceived, encode_event, subject_for
from tests.conftest import SEEDED_TEMPLATE, clone_database
from tests.support.platform import ROOT, running_platform, wait_for

REFERRALS = 500
ROSTER = 40


@contextlib.contextmanager
def _workers(
    env: dict[str, str], workdir: Path, count: int
) -> Iterator[list[tuple[subprocess.Popen[bytes], Path]]]:
    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for i in range(count):
            log = workdir / f"routing-{i}.log"
            with open(log, "ab") as fh:
                procs.append(
                    (
                        subprocess.Popen(
                            [sys.executable, "-m", "refnet.cli", "serve", "routing"],
                            env=env,
                            stdout=fh,
                            stderr=fh,
                            cwd=ROOT,
                        ),
                        log,
                    )
                )
        yield procs
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _ in procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def _prepare(dsn: str, rng: random.Random) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        # Little capacity in the demo network, plus a mixed roster: some referrals must wait.
        await conn.execute("UPDATE case_managers SET capacity = 3")
        staff, cms = [], []
        for i in range(ROSTER):
            sid = uuid.uuid4()
            region = ("south_la", "san_fernando_valley")[i % 2]
            staff.append((sid, f"load{i}@test.invalid", f"Load {i}", "case_manager", region, "!"))
            cms.append(
                (
                    sid,
                    [region] if rng.random() < 0.8 else ["south_la", "san_fernando_valley"],
                    rng.sample(NEED_CODES, rng.randint(2, 6)),
                    ["en"] + (["es"] if rng.random() < 0.5 else []),
                    rng.randint(2, 10),
                    rng.choice(("active",) * 9 + ("inactive",)),
                    rng.sample(SPECIALISMS, rng.choice((0, 0, 1))),
                )
            )
        await conn.copy_records_to_table(
            "staff", records=staff, columns=["id", "email", "display_name", "role", "region", "password_hash"]
        )
        await conn.copy_records_to_table(
            "case_managers",
            records=cms,
            columns=["staff_id", "regions", "needs", "languages", "capacity", "status", "specialisms"],
        )
        partners = [r["id"] for r in await conn.fetch("SELECT id FROM partners")]
        refs, outbox = [], []
        now = datetime.now(UTC)
        for _ in range(REFERRALS):
            rid = uuid.uuid4()
            partner = rng.choice(partners)
            urgency = "urgent" if rng.random() < 0.15 else "routine"
            refs.append(
                (
                    rid,
                    partner,
                    "received",
                    rng.choice(("south_la", "san_fernando_valley")),
                    rng.sample(NEED_CODES, rng.randint(1, 3)),
                    rng.choices(("en", "es", "ko"), (80, 17, 3))[0],
                    urgency,
                    rng.randint(10, 24),
                    now,
                    now,
                )
            )
            event = ReferralReceived(referral_id=str(rid), partner_id=str(partner), urgency=urgency)
            outbox.append((uuid.UUID(event.event_id), subject_for(event), encode_event(event)))
        async with conn.transaction():
            await conn.copy_records_to_table(
                "referrals",
                records=refs,
                columns=[
                    "id",
                    "partner_id",
                    "status",
                    "region",
                    "needs",
                    "language",
                    "urgency",
                    "age_years",
                    "received_at",
                    "updated_at",
                ],
            )
            await conn.copy_records_to_table(
                "outbox", records=outbox, columns=["event_id", "subject", "payload"]
            )
    finally:
        await conn.close()


@pytest.fixture
def routing_db(pg_server: EmbeddedPostgres, seeded_template: dict[str, Any]) -> str:
    return asyncio.run(clone_database(pg_server, "rc", SEEDED_TEMPLATE))


async def test_two_workers_route_500_referrals_once_each_within_capacity(
    routing_db: str, seeded_template: dict[str, Any], tmp_path: Path
) -> None:
    await _prepare(routing_db, random.Random(20261123))
    with (
        # intake relays the referral.received rows _prepare wrote (as intake would have); only its NATS
        # user may publish them. The routing workers under test are the two started below.
        running_platform(routing_db, tmp_path, seeded_template, services=("intake",)) as plat,
        _workers({**plat.env, **plat.nats_credentials_env("routing")}, tmp_path, 2) as procs,
    ):
        conn = await asyncpg.connect(routing_db)
        try:

            async def settled() -> bool:
                for proc, log in procs:
                    assert proc.poll() is None, log.read_text()[-2000:]
                return bool(
                    await conn.fetchval(
                        "SELECT NOT EXISTS (SELECT 1 FROM referrals WHERE status = 'received')"
                        " AND NOT EXISTS (SELECT 1 FROM outbox)"
                    )
                )

            await wait_for(settled, timeout=90, interval=0.2)
            await _check(conn)
            # The burst was decided in shared transactions (group commit), not one per event: the
            # invariants above held with batches from both workers contending for the same rows.
            transactions = await conn.fetchval("SELECT count(DISTINCT xmin::text) FROM routing_decisions")
            assert transactions < REFERRALS // 2, f"{transactions} transactions for {REFERRALS} decisions"
        finally:
            await conn.close()
    decided = [log.read_text().count('"event": "routing.decided"') for _, log in procs]
    assert all(n > 0 for n in decided), f"both workers should have routed some referrals: {decided}"
    assert sum(decided) >= REFERRALS


async def _check(conn: asyncpg.Connection) -> None:
    statuses = {
        r["status"]: int(r["count"])
        for r in await conn.fetch("SELECT status, count(*) FROM referrals GROUP BY status")
    }
    assert set(statuses) <= {"assigned", "unroutable"}, statuses
    assert sum(statuses.values()) == REFERRALS
    assert statuses.get("unroutable", 0) > 0, "the scenario should overflow capacity"
    assert statuses.get("assigned", 0) > REFERRALS // 3
    # Every assigned referral has exactly one assignment (an offer), every queued one none.
    wrong = await conn.fetch(
        "SELECT r.id, r.status, count(a.id) AS offers FROM referrals r LEFT JOIN assignments a ON a.referral_id = r.id"
        " GROUP BY r.id HAVING count(a.id) <> CASE WHEN r.status = 'assigned' THEN 1 ELSE 0 END"
    )
    assert not wrong, wrong[:5]
    # One decision per referral: no event was acted on twice.
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM (SELECT referral_id FROM routing_decisions GROUP BY referral_id HAVING count(*) <> 1) d"
        )
        == 0
    )
    # Capacity: never exceeded, and the counter is exactly the live offers.
    over = await conn.fetch(
        "SELECT staff_id, active_count, capacity FROM case_managers WHERE active_count > capacity"
    )
    assert not over, over
    drift = await conn.fetchval(
        "SELECT count(*) FROM case_managers c WHERE c.active_count <> (SELECT count(*) FROM assignments a"
        " WHERE a.case_manager_id = c.staff_id AND a.state IN ('offered', 'accepted'))"
    )
    assert drift == 0
    # Offers went only to eligible case managers (region, language, active) ...
    bad = await conn.fetchval(
        "SELECT count(*) FROM assignments a JOIN referrals r ON r.id = a.referral_id"
        " JOIN case_managers c ON c.staff_id = a.case_manager_id"
        " WHERE NOT (r.region = ANY (c.regions)) OR NOT (r.language = ANY (c.languages)) OR c.status <> 'active'"
    )
    assert bad == 0
    # ... and nothing waits that someone could take now: no lost referral.
    rules = load_rules()
    cms = [
        Candidate(
            id=str(r["staff_id"]),
            regions=tuple(r["regions"]),
            needs=tuple(r["needs"]),
            languages=tuple(r["languages"]),
            capacity=r["capacity"],
            active_count=r["active_count"],
            status=r["status"],
            specialisms=tuple(r["specialisms"]),
        )
        for r in await conn.fetch("SELECT * FROM case_managers")
    ]
    now = datetime.now(UTC)
    for ref in await conn.fetch("SELECT * FROM referrals WHERE status = 'unroutable'"):
        assert ref["unroutable_reason"] == "no_eligible_case_manager"
        d = choose(facts_for(ref, rules, now), cms, frozenset(), rules.weights)
        assert d.chosen is None, f"{ref['id']} waits although {d.chosen} could take it"
