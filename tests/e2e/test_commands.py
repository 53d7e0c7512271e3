"""`refnet serve routing` and `refnet serve notify` answer their NATS commands (the processes intake asks):
discoverable with the stock micro-service verbs, carrying out a manual assignment and a replay."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Any

import asyncpg
import nats.errors

from shared.bus import connect
from shared.commands import (
    NOTIFY_SERVICE,
    ROUTING_SERVICE,
    AssignCommand,
    ReplayCommand,
    request_assignment,
    request_replay,
)
from tests.support.platform import wait_for


async def test_the_service_processes_answer_commands(platform: Any) -> None:
    nc = await connect(platform.nats.url, "test-e2e-intake")
    conn = await asyncpg.connect(platform.dsn)
    try:

        async def both_up() -> set[str] | None:
            names: set[str] = set()
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            await nc.publish("$SRV.PING", b"", reply=inbox)
            try:
                # Every service instance answers the ping; collect answers until a pause.
                with contextlib.suppress(nats.errors.TimeoutError):
                    while True:
                        msg = await sub.next_msg(timeout=0.3)
                        names.add(json.loads(msg.data)["name"])
            finally:
                await sub.unsubscribe()
            return names if {ROUTING_SERVICE, NOTIFY_SERVICE} <= names else None

        await wait_for(both_up, timeout=30)

        creds = platform.creds
        sup = next(s for s in creds["supervisors"] if s["region"] == "south_la")
        cm = next(c["id"] for c in creds["case_managers"] if c["regions"] == ["south_la"])
        rid = str(uuid.uuid4())
        await conn.execute(
            "INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years,"
            " unroutable_reason, queued_at) VALUES ($1, $2, 'unroutable', 'south_la', '{housing}', 'en',"
            " 'routine', 16, 'offers_exhausted', now())",
            rid,
            creds["partners"][0]["id"],
        )
        reply = await request_assignment(
            nc,
            AssignCommand(
                referral_id=rid,
                case_manager_id=cm,
                reason="e2e",
                actor_id=sup["id"],
                actor_role="supervisor",
                actor_region="south_la",
            ),
        )
        assert reply.status == 201 and reply.assignment is not None, reply
        assert await conn.fetchval("SELECT status FROM referrals WHERE id = $1", rid) == "assigned"

        admin = creds["admins"][0]
        missing = await request_replay(
            nc, ReplayCommand(delivery_id=str(uuid.uuid4()), actor_id=admin["id"], actor_role="admin")
        )
        assert (missing.status, missing.message) == (404, "No such delivery.")
    finally:
        await conn.close()
        await nc.close()
