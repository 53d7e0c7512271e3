"""The protocol's overdue sweep and notify's handling of it on a real database: one event per overdue step
however often the sweep runs, none for withdrawn or closed referrals, and one notification per person
however often the event is delivered."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest

from services.intake.core.auth import Caller
from services.intake.core.keys import Keys
from services.intake.protocol.schemas import CompleteIn
from services.intake.protocol.service import complete, new_step_columns, use_protocol
from services.intake.protocol.sweep import escalate_overdue
from services.notify.worker import make_handler as notify_handler
from shared.config import load_settings
from shared.events import ProtocolOverdue, decode_event

SETTINGS = load_settings({}, secret_key="x", pii_master_key="", database_url="unused")
# The steps part of create_referrals.sql (for one referral), for referrals these tests insert by hand.
_INSERT_STEPS = """
INSERT INTO protocol_steps (referral_id, partner_id, protocol_version, code, position, roles, clock_from,
                            clock_minutes, reference_required, outcomes, escalate_to, due_at)
SELECT $1, $2, $3, s.code, s.position, string_to_array(s.roles, ','), s.clock_from, s.clock_minutes,
       s.reference_required, coalesce(string_to_array(nullif(s.outcomes, ''), ','), '{}'),
       coalesce(string_to_array(nullif(s.escalate_to, ''), ','), '{}'), s.due_at
FROM unnest($4::text[], $5::int[], $6::text[], $7::text[], $8::int[], $9::bool[], $10::text[], $11::text[],
            $12::timestamptz[])
     AS s (code, position, roles, clock_from, clock_minutes, reference_required, outcomes, escalate_to, due_at)
"""


async def _insert_steps(
    conn: asyncpg.Connection, rid: str, partner_id: str, age: int, received: datetime
) -> int:
    columns = new_step_columns(age, received)
    await conn.execute(_INSERT_STEPS, rid, partner_id, *columns)
    return len(columns[1])


async def _child_referral(pool: asyncpg.Pool, partner_id: str, status: str, hours_ago: float) -> str:
    rid = str(uuid.uuid4())
    received = datetime.now(UTC) - timedelta(hours=hours_ago)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years,"
            " received_at, updated_at) VALUES ($1, $2, $3, 'south_la', '{housing}', 'en', 'routine', 15, $4, $4)",
            rid,
            partner_id,
            status,
            received,
        )
        assert await _insert_steps(cast(asyncpg.Connection, conn), rid, partner_id, 15, received) == 5
    return rid


async def _overdue_events(pool: asyncpg.Pool) -> list[ProtocolOverdue]:
    rows = await pool.fetch(
        "SELECT payload FROM outbox WHERE subject = 'refnet.protocol.overdue' ORDER BY id"
    )
    events = [decode_event(bytes(r["payload"])) for r in rows]
    assert all(isinstance(e, ProtocolOverdue) for e in events)
    return [e for e in events if isinstance(e, ProtocolOverdue)]


async def test_each_overdue_step_raises_one_event_and_one_notification_per_person(
    pool: asyncpg.Pool, seeded_db: tuple[str, dict[str, Any]]
) -> None:
    creds = seeded_db[1]
    partner = creds["partners"][0]["id"]
    late = await _child_referral(pool, partner, "unroutable", hours_ago=2)
    fresh = await _child_referral(pool, partner, "unroutable", hours_ago=0.5)
    withdrawn = await _child_referral(pool, partner, "withdrawn", hours_ago=2)

    assert await escalate_overdue(pool) == 1
    for _ in range(3):  # later sweeps: nothing new
        assert await escalate_overdue(pool) == 0
    events = await _overdue_events(pool)
    assert [(e.referral_id, e.step) for e in events] == [(late, "advocate_response")]
    assert fresh not in {e.referral_id for e in events} and withdrawn not in {e.referral_id for e in events}

    # Nobody holds the case (it waits in the queue): the region's supervisors are told, once each, however
    # often JetStream delivers the event.
    handle = notify_handler(pool, SETTINGS)
    for _ in range(3):
        await handle(events[0])
    told = await pool.fetch(
        "SELECT recipient_id, data FROM notifications WHERE kind = 'protocol_overdue' AND referral_id = $1",
        late,
    )
    south = {s["id"] for s in creds["supervisors"] if s["region"] == "south_la"}
    assert sorted(str(t["recipient_id"]) for t in told) == sorted(south)

    # The step's clock passes for the second referral too: one more event, for it alone.
    await pool.execute(
        "UPDATE protocol_steps SET due_at = now() - interval '1 minute' WHERE referral_id = $1 AND code = 'advocate_response'",
        fresh,
    )
    assert await escalate_overdue(pool) == 1
    assert [(e.referral_id, e.step) for e in await _overdue_events(pool)][-1] == (fresh, "advocate_response")


async def test_a_step_done_in_time_before_notify_runs_tells_nobody(
    pool: asyncpg.Pool, seeded_db: tuple[str, dict[str, Any]]
) -> None:
    rid = await _child_referral(pool, seeded_db[1]["partners"][0]["id"], "unroutable", hours_ago=0.5)
    due = await pool.fetchval(
        "SELECT due_at FROM protocol_steps WHERE referral_id = $1 AND code = 'advocate_response'", rid
    )
    staff = seeded_db[1]["supervisors"][0]["id"]
    await pool.execute(
        "UPDATE protocol_steps SET completed_at = $2, completed_by = $3 WHERE referral_id = $1"
        " AND code = 'advocate_response'",
        rid,
        due - timedelta(minutes=5),
        staff,
    )
    await notify_handler(pool, SETTINGS)(
        ProtocolOverdue(referral_id=rid, step="advocate_response", due_at=due)
    )
    assert await pool.fetchval("SELECT count(*) FROM notifications WHERE referral_id = $1", rid) == 0


async def test_a_clock_from_another_step_starts_when_it_is_completed(
    pool: asyncpg.Pool, seeded_db: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    custom = tmp_path / "protocol.toml"
    custom.write_text(
        'version = "t-dependent"\n[[protocols]]\nname = "p"\nmin_age = 0\nmax_age = 17\n'
        '[[protocols.steps]]\ncode = "first"\nroles = ["supervisor"]\n'
        '[[protocols.steps]]\ncode = "second"\nroles = ["supervisor"]\nclock_from = "first"\nclock_minutes = 60\n'
    )
    supervisor = next(s for s in seeded_db[1]["supervisors"] if s["region"] == "south_la")
    caller = Caller(kind="staff", id=supervisor["id"], role="supervisor", region="south_la")
    keys = Keys("", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", "k1")
    use_protocol(str(custom))
    try:
        rid = str(uuid.uuid4())
        partner = seeded_db[1]["partners"][0]["id"]
        received = datetime.now(UTC) - timedelta(hours=3)
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years,"
                " received_at, updated_at) VALUES ($1, $2, 'unroutable', 'south_la', '{housing}', 'en', 'routine',"
                " 12, $3, $3)",
                rid,
                partner,
                received,
            )
            await _insert_steps(cast(asyncpg.Connection, conn), rid, partner, 12, received)
        done = received + timedelta(hours=1)
        async with pool.acquire() as conn, conn.transaction():
            step = await complete(
                cast(asyncpg.Connection, conn), caller, keys, rid, "first", CompleteIn(completed_at=done)
            )
        assert step.status == "done"
        fetched = await pool.fetch("SELECT code, due_at FROM protocol_steps WHERE referral_id = $1", rid)
        rows = {r["code"]: r["due_at"] for r in fetched}
        assert rows == {"first": None, "second": done + timedelta(hours=1)}
        # Its deadline has passed (an hour ago): the sweep escalates it.
        assert await escalate_overdue(pool) >= 1
        assert await pool.fetchval(
            "SELECT escalated_at IS NOT NULL FROM protocol_steps WHERE referral_id = $1 AND code = 'second'",
            rid,
        )
    finally:
        use_protocol("")


async def test_an_escalation_event_names_one_step(
    pool: asyncpg.Pool, seeded_db: tuple[str, dict[str, Any]]
) -> None:
    # The unique index on escalation_event_id is partial since 0103 (steps not escalated have none):
    # still one step per event, and any number of steps without one.
    partner = seeded_db[1]["partners"][0]["id"]
    first = await _child_referral(pool, partner, "unroutable", hours_ago=0)
    second = await _child_referral(pool, partner, "unroutable", hours_ago=0)
    assert await pool.fetchval("SELECT count(*) FROM protocol_steps WHERE escalation_event_id IS NULL") >= 10
    event = str(uuid.uuid4())
    mark = "UPDATE protocol_steps SET escalation_event_id = $2 WHERE referral_id = $1 AND code = 'hotline_report'"
    await pool.execute(mark, first, event)
    with pytest.raises(asyncpg.UniqueViolationError):
        await pool.execute(mark, second, event)
