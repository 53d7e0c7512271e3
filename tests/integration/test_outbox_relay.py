"""The outbox relay on real PostgreSQL (as the service role) and a real nats-server: publish, put back, wake."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from nats.js import JetStreamContext

from refnet_dev.embedded import EmbeddedNats
from shared.bus import STREAM, connect, ensure_stream
from shared.db import SYSTEM, create_pool, mark_outbox_written, service_dsn, transaction
from shared.events import ReferralReceived
from shared.outbox import OutboxRelay, enqueue


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    # As refnet_app: row-level security applies to the relay as it does in the services.
    p = await create_pool(service_dsn(db_dsn), max_size=4)
    yield p
    await p.close()


@pytest.fixture
async def js(tmp_path: Path) -> AsyncIterator[JetStreamContext]:
    server = EmbeddedNats(tmp_path / "nats")
    url = server.start()
    nc = await connect(url, "test-outbox")
    try:
        ctx = nc.jetstream()
        await ensure_stream(ctx)
        yield ctx
    finally:
        await nc.close()
        server.stop()


async def _commit(pool: asyncpg.Pool, n: int = 1) -> list[str]:
    events = [ReferralReceived(referral_id=str(uuid.uuid4()), partner_id=str(uuid.uuid4())) for _ in range(n)]
    async with transaction(pool, SYSTEM) as conn:
        await enqueue(conn, *events)
    return [e.event_id for e in events]


async def _fetch(pool: asyncpg.Pool, sql: str, *args: object) -> list[asyncpg.Record]:
    """Read as the system identity: under row-level security nobody else sees the outbox."""
    async with transaction(pool, SYSTEM) as conn:
        return await conn.fetch(sql, *args)


async def _outbox_count(pool: asyncpg.Pool) -> int:
    return len(await _fetch(pool, "SELECT id FROM outbox"))


async def _stream_ids(js: JetStreamContext) -> list[str]:
    """The Nats-Msg-Id of every message in the stream, in stream order."""
    info = await js.stream_info(STREAM)
    ids = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(STREAM, seq)
        ids.append((msg.headers or {})["Nats-Msg-Id"])
    return ids


async def _unpublishable(pool: asyncpg.Pool, n: int) -> list[int]:
    """Rows whose subject no stream takes: JetStream refuses them (no responders)."""
    async with transaction(pool, SYSTEM) as conn:
        rows = await conn.fetch(
            "INSERT INTO outbox (event_id, subject, payload)"
            " SELECT gen_random_uuid(), 'elsewhere.nobody', '\\x00'::bytea FROM generate_series(1, $1)"
            " RETURNING id",
            n,
        )
    return [r["id"] for r in rows]


async def test_relay_publishes_in_order_with_the_event_id_and_empties_the_outbox(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    ids = await _commit(pool, 5)
    relay = OutboxRelay(pool, js, "unused")
    assert await relay.relay_once() == 5
    assert await relay.relay_once() == 0
    assert await _outbox_count(pool) == 0
    assert await _stream_ids(js) == ids
    # Published twice (a crash between publish and commit): the stream's duplicate window drops it.
    await _commit_again(pool, ids[0])
    assert await relay.relay_once() == 1
    assert await _stream_ids(js) == ids


async def _commit_again(pool: asyncpg.Pool, event_id: str) -> None:
    async with transaction(pool, SYSTEM) as conn:
        await enqueue(conn, ReferralReceived(event_id=event_id, referral_id="r", partner_id="p"))


async def test_rows_that_fail_to_publish_are_put_back_as_they_were(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    good = await _commit(pool, 2)
    bad = await _unpublishable(pool, 2)
    assert await _outbox_count(pool) == 4
    before = {
        r["id"]: (r["event_id"], r["created_at"])
        for r in await _fetch(pool, "SELECT * FROM outbox WHERE id = any($1)", bad)
    }
    relay = OutboxRelay(pool, js, "unused")
    assert await relay.relay_once() == 2
    assert relay.last_error is not None
    rows = await _fetch(pool, "SELECT id, event_id, created_at, attempts FROM outbox ORDER BY id")
    # Same ids (so the order holds), same events and times, one attempt counted; the good ones gone.
    assert [r["id"] for r in rows] == bad
    assert {r["id"]: (r["event_id"], r["created_at"]) for r in rows} == before
    assert [r["attempts"] for r in rows] == [1, 1]
    assert await _stream_ids(js) == good


async def test_a_batch_that_fails_entirely_changes_nothing(pool: asyncpg.Pool, js: JetStreamContext) -> None:
    bad = await _unpublishable(pool, 3)
    relay = OutboxRelay(pool, js, "unused")
    with pytest.raises(ConnectionError):
        await relay.relay_once()
    rows = await _fetch(pool, "SELECT id, attempts FROM outbox ORDER BY id")
    assert [(r["id"], r["attempts"]) for r in rows] == [(i, 0) for i in bad]


async def test_a_commit_during_a_batch_is_relayed_without_waiting_for_the_poll(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """The wake-up of a commit that lands while a batch is out must not be lost (poll here: 1 hour)."""
    late: list[str] = []

    class Racing(OutboxRelay):
        async def relay_once(self) -> int:
            sent = await super().relay_once()
            if not late:
                # This process commits while the relay is busy: its in-process hook sets the wake.
                late.extend(await _commit(pool))
            return sent

    relay = Racing(pool, js, "unused", poll_interval=3600)
    first = await _commit(pool)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        async with asyncio.timeout(30):
            while await _outbox_count(pool) or not late:
                await asyncio.sleep(0.02)
        assert await _stream_ids(js) == first + late
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_a_failing_relay_backs_off_even_while_commits_keep_waking_it(
    pool: asyncpg.Pool, js: JetStreamContext
) -> None:
    """NATS refusing everything while intake keeps committing: the relay retries on its back-off
    (here twice the 0.5 s poll), not once per commit."""
    await _unpublishable(pool, 1)
    calls = 0

    class Counting(OutboxRelay):
        async def relay_once(self) -> int:
            nonlocal calls
            calls += 1
            return await super().relay_once()

    relay = Counting(pool, js, "unused", poll_interval=0.5)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    started = time.monotonic()
    try:
        for _ in range(150):  # about 1.5 s of commits that wake the relay in-process
            async with transaction(pool, SYSTEM):
                mark_outbox_written()
            await asyncio.sleep(0.01)
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    # One try at the start, then one per second of back-off (however long the commits took here).
    assert 1 <= calls <= 2 + (time.monotonic() - started) / 1.0, calls
    assert relay.last_error is not None


async def test_a_row_committed_late_below_the_claim_floor_is_relayed_by_the_next_full_claim(
    pool: asyncpg.Pool, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shared.outbox._FULL_CLAIM_EVERY_S", 0.3)
    relay = OutboxRelay(pool, js, "unused")
    late = ReferralReceived(referral_id=str(uuid.uuid4()), partner_id=str(uuid.uuid4()))
    async with transaction(pool, SYSTEM) as slow:
        await enqueue(slow, late)  # takes its id now, commits last
        async with transaction(pool, SYSTEM) as conn:
            # Thousands of ids taken meanwhile (the identity's sequence), far more than the margin.
            await conn.execute(
                "SELECT nextval(pg_get_serial_sequence('outbox', 'id')) FROM generate_series(1, 5000)"
            )
        [early] = await _commit(pool)
        assert await relay.relay_once() == 1  # a full claim: only the committed row is there
    # The late row is below the floor the claim left: the claims that read from the floor miss it
    # until the next claim from the start, which does not wait longer than _FULL_CLAIM_EVERY_S.
    assert await relay.relay_once() == 0
    assert await _outbox_count(pool) == 1
    await asyncio.sleep(0.35)
    assert await relay.relay_once() == 1
    assert await _outbox_count(pool) == 0
    assert await _stream_ids(js) == [early, late.event_id]
