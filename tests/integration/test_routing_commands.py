"""Manual assignment carried out by routing over NATS request-reply (nats.micro), on real PostgreSQL (as
the services' role, so row-level security applies) and a real nats-server: the same answers as the
HTTP API gave, one transaction under the actor's identity re-read from `staff`, forged actors refused."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client as NATS

from refnet_dev.embedded import EmbeddedNats
from services.routing.commands import serve_commands
from shared.bus import connect
from shared.commands import (
    AssignCommand,
    AssignReply,
    CommandUnavailable,
    request_assignment,
)
from shared.config import load_settings
from shared.db import create_pool, service_dsn
from shared.events import decode_event

SETTINGS = load_settings({}, secret_key="x", database_url="unused")


@pytest.fixture
async def pool(seeded_db: tuple[str, dict[str, Any]]) -> AsyncIterator[asyncpg.Pool]:
    """The test's own superuser view, to arrange and inspect."""
    p = await create_pool(seeded_db[0], max_size=2)
    yield p
    await p.close()


@pytest.fixture
async def app_pool(seeded_db: tuple[str, dict[str, Any]]) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(service_dsn(seeded_db[0]), max_size=4)
    yield p
    await p.close()


@pytest.fixture
def creds(seeded_db: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return seeded_db[1]


@pytest.fixture
async def nats_url(tmp_path: Path) -> AsyncIterator[str]:
    server = EmbeddedNats(tmp_path / "nats")
    url = server.start()
    try:
        yield url
    finally:
        server.stop()


@pytest.fixture
async def client(nats_url: str) -> AsyncIterator[NATS]:
    nc = await connect(nats_url, "test-intake")
    yield nc
    await nc.close()


@pytest.fixture
async def routing(nats_url: str, app_pool: asyncpg.Pool) -> AsyncIterator[Any]:
    """One routing process's command endpoint."""
    nc = await connect(nats_url, "test-routing")
    service = await serve_commands(nc, app_pool, SETTINGS)
    yield service
    await service.stop()
    await nc.close()


def _south_supervisor(creds: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in creds["supervisors"] if s["region"] == "south_la")


def _valley_supervisor(creds: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in creds["supervisors"] if s["region"] == "san_fernando_valley")


def _south_cm(creds: dict[str, Any], index: int = 0) -> str:
    return str([c["id"] for c in creds["case_managers"] if c["regions"] == ["south_la"]][index])


async def _queued_referral(pool: asyncpg.Pool, creds: dict[str, Any], status: str = "unroutable") -> str:
    rid = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years,"
        " unroutable_reason, queued_at) VALUES ($1, $2, $3, 'south_la', '{housing}', 'en', 'routine', 16,"
        " CASE WHEN $3 = 'unroutable' THEN 'offers_exhausted' END, CASE WHEN $3 = 'unroutable' THEN now() END)",
        rid,
        creds["partners"][0]["id"],
        status,
    )
    return rid


def _as_supervisor(sup: dict[str, Any], rid: str, cm: str, **overrides: Any) -> AssignCommand:
    fields: dict[str, Any] = {
        "referral_id": rid,
        "case_manager_id": cm,
        "reason": "Knows the family from an earlier case.",
        "actor_id": sup["id"],
        "actor_role": "supervisor",
        "actor_region": sup["region"],
        "request_id": "req-1",
    }
    fields.update(overrides)
    return AssignCommand(**fields)


async def _nothing_written(pool: asyncpg.Pool, rid: str) -> None:
    assert await pool.fetchval("SELECT count(*) FROM assignments WHERE referral_id = $1", rid) == 0
    assert await pool.fetchval("SELECT count(*) FROM routing_decisions WHERE referral_id = $1", rid) == 0
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE target_id = $1", rid) == 0
    assert await pool.fetchval("SELECT status FROM referrals WHERE id = $1", rid) != "assigned"


async def test_a_supervisor_assigns_by_hand_through_routing(
    pool: asyncpg.Pool, client: NATS, routing: Any, creds: dict[str, Any]
) -> None:
    sup = _south_supervisor(creds)
    rid = await _queued_referral(pool, creds)
    cm = _south_cm(creds)
    await pool.execute("UPDATE case_managers SET active_count = capacity WHERE staff_id = $1", cm)

    reply = await request_assignment(client, _as_supervisor(sup, rid, cm))

    assert reply.status == 201 and reply.assignment is not None, reply
    done = reply.assignment
    assert (done.referral_id, done.case_manager_id) == (rid, cm)
    assert done.over_capacity and done.active_count == done.capacity + 1
    assert any("over capacity" in w for w in done.warnings)
    offer = await pool.fetchrow(
        "SELECT id, case_manager_id, state FROM assignments WHERE referral_id = $1", uuid.UUID(rid)
    )
    assert offer is not None
    assert (str(offer["id"]), str(offer["case_manager_id"]), offer["state"]) == (
        done.assignment_id,
        cm,
        "offered",
    )
    assert await pool.fetchval("SELECT status FROM referrals WHERE id = $1", rid) == "assigned"
    decision = await pool.fetchrow(
        "SELECT id, kind, actor_id, reason, chosen_id FROM routing_decisions WHERE referral_id = $1", rid
    )
    assert decision is not None
    assert (str(decision["id"]), decision["kind"], str(decision["actor_id"]), decision["reason"]) == (
        done.decision_id,
        "manual",
        sup["id"],
        "Knows the family from an earlier case.",
    )
    # The audit record names the actor as the database knows them; the reason stays out of it.
    audited = await pool.fetch(
        "SELECT actor_role, actor_id, target_type, detail FROM audit_log WHERE action = 'routing.manual_assign'"
        " AND target_id = $1",
        rid,
    )
    assert len(audited) == 1
    row = audited[0]
    assert (row["actor_role"], row["actor_id"], row["target_type"]) == ("supervisor", sup["id"], "referral")
    assert row["detail"]["decision_id"] == done.decision_id and row["detail"]["over_capacity"] is True
    assert "family" not in str(row["detail"])
    # The events went out with the change, correlated with the asking request.
    events = [
        decode_event(bytes(r["payload"])) for r in await pool.fetch("SELECT payload FROM outbox ORDER BY id")
    ]
    mine = [e for e in events if getattr(e, "referral_id", None) == rid]
    assert {type(e).__name__ for e in mine} == {"ReferralAssigned", "ReferralStatusChanged"}
    assert all(e.trace_id == "req-1" for e in mine)


async def test_an_open_offer_is_withdrawn_and_an_admin_may_act_anywhere(
    pool: asyncpg.Pool, client: NATS, routing: Any, creds: dict[str, Any]
) -> None:
    admin = creds["admins"][0]
    rid = await _queued_referral(pool, creds, status="assigned")
    first, second = _south_cm(creds, 0), _south_cm(creds, 1)
    await pool.execute(
        "INSERT INTO assignments (id, referral_id, case_manager_id, state, offered_at, respond_by, attempt)"
        " VALUES ($1, $2, $3, 'offered', now(), now() + interval '1 hour', 1)",
        uuid.uuid4(),
        rid,
        first,
    )
    command = AssignCommand(
        referral_id=rid, case_manager_id=second, reason="cover", actor_id=admin["id"], actor_role="admin"
    )
    reply = await request_assignment(client, command)
    assert reply.status == 201, reply
    states = {
        str(r["case_manager_id"]): r["state"]
        for r in await pool.fetch(
            "SELECT case_manager_id, state FROM assignments WHERE referral_id = $1", rid
        )
    }
    assert states == {first: "cancelled", second: "offered"}
    subjects = [r["subject"] for r in await pool.fetch("SELECT subject FROM outbox ORDER BY id")]
    assert "refnet.assignment.cancelled" in subjects
    audited = await pool.fetchrow(
        "SELECT actor_role, actor_id FROM audit_log WHERE action = 'routing.manual_assign' AND target_id = $1",
        rid,
    )
    assert audited is not None
    assert (audited["actor_role"], audited["actor_id"]) == ("admin", admin["id"])


async def test_another_regions_referral_is_not_found(
    pool: asyncpg.Pool, client: NATS, routing: Any, creds: dict[str, Any]
) -> None:
    rid = await _queued_referral(pool, creds)
    reply = await request_assignment(client, _as_supervisor(_valley_supervisor(creds), rid, _south_cm(creds)))
    assert (reply.status, reply.message, reply.assignment) == (404, "No such referral.", None)
    await _nothing_written(pool, rid)
    missing = await request_assignment(
        client, _as_supervisor(_south_supervisor(creds), str(uuid.uuid4()), _south_cm(creds))
    )
    assert (missing.status, missing.message) == (404, "No such referral.")


async def test_a_referral_past_assignment_is_a_conflict(
    pool: asyncpg.Pool, client: NATS, routing: Any, creds: dict[str, Any]
) -> None:
    rid = await _queued_referral(pool, creds, status="accepted")
    reply = await request_assignment(client, _as_supervisor(_south_supervisor(creds), rid, _south_cm(creds)))
    assert reply.status == 409
    assert (
        reply.message
        == "The referral is accepted; only a waiting or offered referral can be assigned by hand."
    )
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE target_id = $1", rid) == 0


async def test_an_unknown_case_manager_is_unprocessable(
    pool: asyncpg.Pool, client: NATS, routing: Any, creds: dict[str, Any]
) -> None:
    rid = await _queued_referral(pool, creds)
    sup = _south_supervisor(creds)
    for cm in (str(uuid.uuid4()), "not-a-uuid"):
        reply = await request_assignment(client, _as_supervisor(sup, rid, cm))
        assert (reply.status, reply.message, reply.field) == (422, "No such case manager.", "case_manager_id")
    await _nothing_written(pool, rid)


async def test_forged_or_stale_actors_are_refused(
    pool: asyncpg.Pool, client: NATS, routing: Any, creds: dict[str, Any]
) -> None:
    """The command's actor is a claim: routing believes only the `staff` row."""
    rid = await _queued_referral(pool, creds)
    cm = _south_cm(creds)
    case_manager = creds["case_managers"][0]["id"]
    admin = creds["admins"][0]
    sup = _south_supervisor(creds)
    forged = [
        # A case manager claiming to be an admin.
        AssignCommand(
            referral_id=rid, case_manager_id=cm, reason="x", actor_id=case_manager, actor_role="admin"
        ),
        # A supervisor claiming another region (where the referral is).
        _as_supervisor(_valley_supervisor(creds), rid, cm, actor_region="south_la"),
        # A supervisor claiming to be an admin.
        _as_supervisor(sup, rid, cm, actor_role="admin", actor_region=""),
        # Nobody at all, and not even an id.
        _as_supervisor(sup, rid, cm, actor_id=str(uuid.uuid4())),
        _as_supervisor(sup, rid, cm, actor_id="'; DROP TABLE staff; --"),
        # An evaluator (a real staff row, with its true role) may not assign.
        AssignCommand(
            referral_id=rid,
            case_manager_id=cm,
            reason="x",
            actor_id=creds["evaluators"][0]["id"],
            actor_role="evaluator",
        ),
    ]
    for command in forged:
        reply = await request_assignment(client, command)
        assert (reply.status, reply.assignment) == (403, None), command
    await _nothing_written(pool, rid)

    # A deactivated admin no longer acts, whatever their (still valid) token says.
    await pool.execute("UPDATE staff SET deactivated_at = now() WHERE id = $1", admin["id"])
    reply = await request_assignment(
        client,
        AssignCommand(
            referral_id=rid, case_manager_id=cm, reason="x", actor_id=admin["id"], actor_role="admin"
        ),
    )
    assert reply.status == 403
    await _nothing_written(pool, rid)

    # The same supervisor, truthfully: done.
    assert (await request_assignment(client, _as_supervisor(sup, rid, cm))).status == 201


async def test_no_routing_process_means_unavailable_and_nothing_done(
    pool: asyncpg.Pool, client: NATS, creds: dict[str, Any]
) -> None:
    rid = await _queued_referral(pool, creds)
    with pytest.raises(CommandUnavailable):
        await request_assignment(
            client, _as_supervisor(_south_supervisor(creds), rid, _south_cm(creds)), timeout=1
        )
    await _nothing_written(pool, rid)


async def test_a_command_past_its_deadline_is_not_carried_out(
    pool: asyncpg.Pool, client: NATS, routing: Any, creds: dict[str, Any]
) -> None:
    """The caller already answered 503 ("nothing was done"): a late command must keep that true."""
    rid = await _queued_referral(pool, creds)
    late = _as_supervisor(_south_supervisor(creds), rid, _south_cm(creds), deadline=time.time() - 1)
    with pytest.raises(CommandUnavailable, match="deadline"):
        await request_assignment(client, late)
    await _nothing_written(pool, rid)


async def test_two_routing_processes_share_the_commands(
    nats_url: str, app_pool: asyncpg.Pool, client: NATS, routing: Any, creds: dict[str, Any]
) -> None:
    """A queue group: each command reaches exactly one of the processes."""
    nc = await connect(nats_url, "test-routing-2")
    other = await serve_commands(nc, app_pool, SETTINGS)
    try:
        sup = _south_supervisor(creds)
        replies: list[AssignReply] = await asyncio.gather(
            *(
                request_assignment(client, _as_supervisor(sup, str(uuid.uuid4()), _south_cm(creds)))
                for _ in range(40)
            )
        )
        assert {r.status for r in replies} == {404}
        counts = [sum(e.num_requests for e in s.stats().endpoints) for s in (routing, other)]
        assert sum(counts) == 40
        assert min(counts) > 0, counts
    finally:
        await other.stop()
        await nc.close()


async def _out_of_area_referral(pool: asyncpg.Pool, creds: dict[str, Any]) -> str:
    rid = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years,"
        " unroutable_reason, queued_at) VALUES ($1, $2, 'unroutable', NULL, '{housing}', 'en', 'routine', 16,"
        " 'out_of_area', now())",
        rid,
        creds["partners"][0]["id"],
    )
    return rid


@pytest.mark.parametrize("region", ["south_la", "san_fernando_valley"])
async def test_any_supervisor_assigns_an_out_of_area_referral_to_their_case_manager(
    pool: asyncpg.Pool, client: NATS, routing: Any, creds: dict[str, Any], region: str
) -> None:
    # No region owns an out-of-area referral: every supervisor may give it to one of their case managers
    # (row-level security on referrals, assignments and routing_decisions, and routing's own check).
    sup = next(s for s in creds["supervisors"] if s["region"] == region)
    cm = next(c["id"] for c in creds["case_managers"] if c["regions"] == [region])
    rid = await _out_of_area_referral(pool, creds)

    reply = await request_assignment(client, _as_supervisor(sup, rid, cm))

    assert reply.status == 201 and reply.assignment is not None, reply
    assert not any("region" in w for w in reply.assignment.warnings), reply.assignment.warnings
    assert await pool.fetchval("SELECT status FROM referrals WHERE id = $1", rid) == "assigned"
    assert await pool.fetchval(
        "SELECT count(*) FROM routing_decisions WHERE referral_id = $1 AND kind = 'manual' AND actor_id = $2",
        rid,
        sup["id"],
    )
    assert await pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'routing.manual_assign' AND target_id = $1"
        " AND actor_id = $2",
        rid,
        sup["id"],
    )


async def test_a_supervisor_cannot_give_an_out_of_area_referral_to_another_regions_case_manager(
    pool: asyncpg.Pool, client: NATS, routing: Any, creds: dict[str, Any]
) -> None:
    sup = _south_supervisor(creds)
    valley_cm = next(c["id"] for c in creds["case_managers"] if c["regions"] == ["san_fernando_valley"])
    rid = await _out_of_area_referral(pool, creds)
    reply = await request_assignment(client, _as_supervisor(sup, rid, valley_cm))
    assert reply.status == 422, reply
    await _nothing_written(pool, rid)
