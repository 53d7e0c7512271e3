"""intake's side of the commands it sends over a real nats-server: what it asks routing and notify, and how
each answer becomes the HTTP answer (the responders themselves are tested with routing and notify)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import nats
import pytest

from refnet_dev.embedded import EmbeddedNats
from services.intake.admin import routing
from services.intake.admin.schemas import ManualAssignIn
from services.intake.admin.service import replay_delivery
from services.intake.cases import notes
from services.intake.core.auth import Caller
from services.intake.core.dependencies import CallerDb
from services.intake.core.keys import Keys
from services.intake.core.problems import Problem
from shared.commands import (
    ASSIGN_SUBJECT,
    REPLAY_SUBJECT,
    AssignCommand,
    AssignReply,
    ManualAssignment,
    ReplayCommand,
    ReplayReply,
)
from shared.db import create_pool

SUPERVISOR = Caller("staff", str(uuid.uuid4()), "supervisor", region="south_la")
ADMIN = Caller("staff", str(uuid.uuid4()), "admin")
MASTER_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


@dataclass
class Sealing:
    """What intake seals a manual assignment's reason with: the database and the PII keys."""

    pool: asyncpg.Pool
    keys: Keys

    def kw(self) -> dict[str, Any]:
        return {"pool": self.pool, "keys": self.keys}


@pytest.fixture
async def sealing(db_dsn: str) -> AsyncIterator[Sealing]:
    pool = await create_pool(db_dsn)
    try:
        yield Sealing(pool, Keys("", MASTER_KEY, "k1"))
    finally:
        await pool.close()


async def _referral_with_key(s: Sealing, staff_id: str) -> str:
    """A referral with a sealed data key (and the staff row a note names as its writer)."""
    rid, pid = str(uuid.uuid4()), uuid.uuid4()
    sealed = s.keys.ring.seal(b"{}", rid.encode())
    async with s.pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT set_config('app.role', 'system', true)")
        await conn.execute("INSERT INTO partners (id, name) VALUES ($1, $2)", pid, f"p-{pid}")
        await conn.execute(
            "INSERT INTO staff (id, email, role, region, password_hash) VALUES ($1, $2, 'supervisor', 'south_la', 'x')"
            " ON CONFLICT DO NOTHING",
            uuid.UUID(staff_id),
            f"{staff_id}@staff.test",
        )
        await conn.execute(
            "INSERT INTO referrals (id, partner_id, status, needs, urgency, age_years)"
            " VALUES ($1, $2, 'unroutable', '{housing}', 'routine', 15)",
            uuid.UUID(rid),
            pid,
        )
        await conn.execute(
            "INSERT INTO referral_keys (referral_id, partner_id, key_id, wrapped_key) VALUES ($1, $2, $3, $4)",
            uuid.UUID(rid),
            pid,
            sealed.key_id,
            sealed.wrapped_key,
        )
    return rid


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedNats(tmp_path / "nats")
    url = server.start()
    yield url
    server.stop()


class Responder:
    """Answers one subject with the next canned reply and keeps the commands it received."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.replies: list[msgspec.Struct] = []

    async def handle(self, msg: Any) -> None:
        self.received.append(msg.data)
        await msg.respond(msgspec.json.encode(self.replies.pop(0)))


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[Any]:
    client = await nats.connect(nats_url)
    yield client
    await client.close()


async def _serve(nc: Any, subject: str) -> Responder:
    responder = Responder()
    await nc.subscribe(subject, cb=responder.handle)
    await nc.flush()
    return responder


def _fields(command: msgspec.Struct) -> dict[str, Any]:
    """What intake puts in a command (the request helper's own bookkeeping, such as a deadline, aside)."""
    return {k: v for k, v in msgspec.structs.asdict(command).items() if k != "deadline"}


def _assignment(referral_id: str, case_manager_id: str) -> ManualAssignment:
    return ManualAssignment(
        assignment_id=str(uuid.uuid4()),
        referral_id=referral_id,
        case_manager_id=case_manager_id,
        respond_by=datetime.now(UTC),
        over_capacity=True,
        active_count=13,
        capacity=12,
        warnings=["over capacity: 13 of 12 cases"],
        decision_id=str(uuid.uuid4()),
    )


async def test_manual_assignment_asks_routing_as_the_caller(nc: Any, sealing: Sealing) -> None:
    rid, cid = await _referral_with_key(sealing, SUPERVISOR.id), str(uuid.uuid4())
    routing_side = await _serve(nc, ASSIGN_SUBJECT)
    done = _assignment(rid, cid)
    routing_side.replies.append(AssignReply(status=201, assignment=done))
    body = ManualAssignIn(case_manager_id=cid, reason="  Knows the family.  ")
    assert await routing.assign(nc, SUPERVISOR, rid, body, "req-12345678", **sealing.kw()) == done
    command = msgspec.json.decode(routing_side.received[0], type=AssignCommand)
    # The words may describe the youth: sealed with the referral's data key; the bus carries the note's id.
    assert command.reason.startswith(notes.NOTE_REF) and "family" not in routing_side.received[0].decode()
    note_id = command.reason.removeprefix(notes.NOTE_REF)
    assert await notes.open_as_system(sealing.pool, sealing.keys, note_id) == "Knows the family."
    assert _fields(command) == _fields(
        AssignCommand(
            referral_id=rid,
            case_manager_id=cid,
            reason=command.reason,
            actor_id=SUPERVISOR.id,
            actor_role="supervisor",
            actor_region="south_la",
            request_id="req-12345678",
        )
    )


@pytest.mark.parametrize(
    ("reply", "errors"),
    [
        pytest.param(AssignReply(status=404, message="No such referral."), None, id="404"),
        pytest.param(
            AssignReply(status=409, message="The referral is already offered to that case manager."),
            None,
            id="409",
        ),
        pytest.param(
            AssignReply(status=422, message="No such case manager.", field="case_manager_id"),
            [{"field": "case_manager_id", "message": "No such case manager."}],
            id="422",
        ),
        pytest.param(AssignReply(status=403, message="Your role may not assign."), None, id="403"),
    ],
)
async def test_routings_refusals_keep_their_status_text_and_field(
    nc: Any, sealing: Sealing, reply: AssignReply, errors: list[dict[str, str]] | None
) -> None:
    routing_side = await _serve(nc, ASSIGN_SUBJECT)
    routing_side.replies.append(reply)
    rid = await _referral_with_key(sealing, ADMIN.id)
    with pytest.raises(Problem) as refused:
        await routing.assign(
            nc,
            ADMIN,
            rid,
            ManualAssignIn(case_manager_id=str(uuid.uuid4()), reason="Why."),
            **sealing.kw(),
        )
    # A refused assignment keeps no words.
    assert await sealing.pool.fetchval("SELECT count(*) FROM referral_notes") == 0
    assert (refused.value.status_code, refused.value.detail, refused.value.errors) == (
        reply.status,
        reply.message,
        errors,
    )


async def test_ids_that_name_nothing_never_reach_routing(nc: Any, sealing: Sealing) -> None:
    routing_side = await _serve(nc, ASSIGN_SUBJECT)
    with pytest.raises(Problem) as refused:
        await routing.assign(
            nc,
            ADMIN,
            "not-an-id",
            ManualAssignIn(case_manager_id=str(uuid.uuid4()), reason="Why."),
            **sealing.kw(),
        )
    assert (refused.value.status_code, refused.value.detail) == (404, "No such referral.")
    with pytest.raises(Problem) as refused:
        await routing.assign(
            nc,
            ADMIN,
            str(uuid.uuid4()),
            ManualAssignIn(case_manager_id="nobody", reason="Why."),
            **sealing.kw(),
        )
    assert refused.value.status_code == 422
    assert refused.value.errors == [{"field": "case_manager_id", "message": "not a case manager id"}]
    await nc.flush()
    assert routing_side.received == []


@pytest.mark.parametrize("how", ["no responder", "not connected", "server error"])
async def test_no_answer_is_503_with_retry_after(nc: Any, sealing: Sealing, how: str) -> None:
    client: Any = nc
    if how == "not connected":
        client = None
    elif how == "server error":
        routing_side = await _serve(nc, ASSIGN_SUBJECT)
        routing_side.replies.append(AssignReply(status=500, message="boom"))
    with pytest.raises(Problem) as refused:
        await routing.assign(
            client,
            ADMIN,
            str(uuid.uuid4()),
            ManualAssignIn(case_manager_id=str(uuid.uuid4()), reason="Why."),
            **sealing.kw(),
        )
    assert refused.value.status_code == 503
    assert refused.value.headers == {"Retry-After": "5"}
    assert "nothing was done" in refused.value.detail


class NoDatabase(CallerDb):
    """Replay reads the delivery back only after notify said 202; these cases never get there."""

    def __init__(self) -> None:
        super().__init__(None, ADMIN.identity)  # type: ignore[arg-type]

    def transaction(self) -> Any:
        raise AssertionError("no read after a refused replay")


@pytest.mark.parametrize(
    ("reply", "status", "detail", "slug"),
    [
        pytest.param(
            ReplayReply(status=404, message="No such delivery."), 404, "No such delivery.", None, id="404"
        ),
        pytest.param(
            ReplayReply(status=409, message="Only a dead delivery can be replayed."),
            409,
            "Only a dead delivery can be replayed.",
            "replay-refused",
            id="409",
        ),
        pytest.param(ReplayReply(status=403, message="Admins only."), 403, "Admins only.", None, id="403"),
        pytest.param(ReplayReply(status=500), 503, None, None, id="500"),
    ],
)
async def test_replay_answers(
    nc: Any, reply: ReplayReply, status: int, detail: str | None, slug: str | None
) -> None:
    notify_side = await _serve(nc, REPLAY_SUBJECT)
    notify_side.replies.append(reply)
    did = str(uuid.uuid4())
    with pytest.raises(Problem) as refused:
        await replay_delivery(NoDatabase(), ADMIN, nc, did, "req-87654321")
    assert refused.value.status_code == status
    if detail is not None:
        assert refused.value.detail == detail
    assert refused.value.slug == slug
    command = msgspec.json.decode(notify_side.received[0], type=ReplayCommand)
    assert _fields(command) == _fields(
        ReplayCommand(delivery_id=did, actor_id=ADMIN.id, actor_role="admin", request_id="req-87654321")
    )


async def test_a_replay_of_no_delivery_id_never_reaches_notify(nc: Any) -> None:
    notify_side = await _serve(nc, REPLAY_SUBJECT)
    with pytest.raises(Problem) as refused:
        await replay_delivery(NoDatabase(), ADMIN, nc, "nothing", "")
    assert refused.value.status_code == 404
    await asyncio.sleep(0)
    await nc.flush()
    assert notify_side.received == []
