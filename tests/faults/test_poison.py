"""Poison messages: recorded as dead letters (with their error, no PII) and terminated, never blocking.

In process against a real nats-server and database: a handler that always fails is dead-lettered on
delivery max_deliver while good messages flow past it; a failed recording keeps the message. Against
the running services: an undecodable message and an event about a referral that does not exist both
land in dead_letters, admins see them at GET /v1/admin/dead-letters, and routing goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import nats
import nats.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from refnet_dev.embedded import EmbeddedNats
from shared.bus import (
    STREAM,
    ConsumerSpec,
    DeadLetter,
    DeadLetterStore,
    Handler,
    Poison,
    _late_deliveries,
    ensure_stream,
    nats_servers,
    run_consumer,
    safe_error_text,
)
from shared.events import AnyEvent, ReferralReceived, encode_event
from tests.support.platform import Platform, referral_body, wait_for

pytestmark = pytest.mark.faults

SPEC = ConsumerSpec("poison-test", ("refnet.test.>",), ack_wait_s=2.0, max_deliver=4)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[EmbeddedNats]:
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def js(nats_server: EmbeddedNats) -> AsyncIterator[JetStreamContext]:
    nc: NATS = await nats.connect(nats_server.url)
    stream = nc.jetstream(timeout=5)
    await ensure_stream(stream, consumers=[SPEC])
    yield stream
    await nc.close()


async def _publish(js: JetStreamContext, subject: str, data: bytes, msg_id: str | None = None) -> int:
    ack = await js.publish(subject, data, headers={"Nats-Msg-Id": msg_id} if msg_id else None)
    return int(ack.seq)


async def _consume_until(
    js: JetStreamContext,
    handler: Handler,
    store: DeadLetterStore,
    done: Callable[[], Awaitable[bool]],
    timeout: float = 20,
) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(run_consumer(js, SPEC, handler, stop, concurrency=4, dead_letters=store))
    try:
        await wait_for(done, timeout=timeout)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=10)


async def test_failing_handler_is_dead_lettered_without_blocking_others(
    js: JetStreamContext, db_dsn: str
) -> None:
    bad = ReferralReceived(referral_id=str(uuid.uuid4()), partner_id=str(uuid.uuid4()))
    good = [ReferralReceived(referral_id=str(uuid.uuid4()), partner_id=bad.partner_id) for _ in range(5)]
    bad_seq = await _publish(js, "refnet.test.x", encode_event(bad), bad.event_id)
    for e in good:
        await _publish(js, "refnet.test.x", encode_event(e), e.event_id)
    handled: list[str] = []
    attempts: list[int] = []

    async def handler(event: AnyEvent) -> None:
        if event.event_id == bad.event_id:
            attempts.append(1)
            # The error text quotes a value: it must not reach the dead letter as it is.
            raise RuntimeError("violates check constraint for value 'Jane Doe 2009-04-01'")
        handled.append(event.event_id)

    store = DeadLetterStore(db_dsn)
    conn = await asyncpg.connect(db_dsn)
    try:

        async def dead() -> bool:
            return bool(await conn.fetchval("SELECT count(*) FROM dead_letters"))

        await _consume_until(js, handler, store, dead)
        row = await conn.fetchrow("SELECT * FROM dead_letters")
        assert row is not None
    finally:
        await store.close()
        await conn.close()
    # Good messages went past the failing one long before it was given up.
    assert sorted(handled) == sorted(e.event_id for e in good)
    assert len(attempts) == SPEC.max_deliver
    assert row["consumer"] == SPEC.durable
    assert row["subject"] == "refnet.test.x"
    assert str(row["event_id"]) == bad.event_id
    assert row["stream_seq"] == bad_seq
    assert row["delivery_count"] == SPEC.max_deliver
    assert row["reason"] == "exhausted"
    assert row["error_class"] == "RuntimeError"
    assert "Jane" not in row["error_message"] and "2009" not in row["error_message"]
    assert "check constraint" in row["error_message"]
    assert bytes(row["payload"]) == encode_event(bad)
    ci = await js.consumer_info(STREAM, SPEC.durable)
    assert (ci.num_pending, ci.num_ack_pending) == (0, 0)


async def test_undecodable_and_poison_are_terminated_at_once(js: JetStreamContext, db_dsn: str) -> None:
    crafted = b"\xff\x00 not an event {"
    crafted_id = str(uuid.uuid4())
    await _publish(js, "refnet.test.garbage", crafted, crafted_id)
    await _publish(js, "refnet.test.nomsgid", b'{"type": "no.such.event"}')
    poison = ReferralReceived(referral_id=str(uuid.uuid4()), partner_id=str(uuid.uuid4()))
    await _publish(js, "refnet.test.poison", encode_event(poison), poison.event_id)
    calls: list[str] = []

    async def handler(event: AnyEvent) -> None:
        calls.append(event.event_id)
        raise Poison(f"referral {event.referral_id} does not exist")  # type: ignore[union-attr]

    store = DeadLetterStore(db_dsn)
    conn = await asyncpg.connect(db_dsn)
    try:

        async def three() -> bool:
            return bool(await conn.fetchval("SELECT count(*) = 3 FROM dead_letters"))

        await _consume_until(js, handler, store, three)
        rows = {r["subject"]: r for r in await conn.fetch("SELECT * FROM dead_letters")}
    finally:
        await store.close()
        await conn.close()
    assert calls == [poison.event_id]  # tried once: a poison is not retried
    garbage = rows["refnet.test.garbage"]
    assert (garbage["reason"], garbage["delivery_count"]) == ("undecodable", 1)
    assert str(garbage["event_id"]) == crafted_id  # from Nats-Msg-Id
    assert bytes(garbage["payload"]) == crafted
    assert rows["refnet.test.nomsgid"]["event_id"] is None
    assert rows["refnet.test.poison"]["reason"] == "poison"
    assert rows["refnet.test.poison"]["error_message"] == f"referral {poison.referral_id} does not exist"
    ci = await js.consumer_info(STREAM, SPEC.durable)
    assert (ci.num_pending, ci.num_ack_pending) == (0, 0)


class _FlakyStore(DeadLetterStore):
    """Cannot record the first ``failures`` times (the database is away), then records in memory."""

    def __init__(self, failures: int) -> None:
        super().__init__("")
        self.failures = failures
        self.recorded: list[DeadLetter] = []

    async def record(self, letter: DeadLetter) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionRefusedError("database down")
        self.recorded.append(letter)


async def test_a_dead_letter_that_cannot_be_recorded_is_kept(js: JetStreamContext) -> None:
    poison = ReferralReceived(referral_id=str(uuid.uuid4()), partner_id=str(uuid.uuid4()))
    await _publish(js, "refnet.test.poison", encode_event(poison), poison.event_id)

    async def handler(event: AnyEvent) -> None:
        raise Poison("never")

    store = _FlakyStore(failures=2)

    async def recorded() -> bool:
        return bool(store.recorded)

    await _consume_until(js, handler, store, recorded)
    # Not terminated while it could not be recorded: redelivered until the record committed.
    assert store.recorded[0].delivery_count == 3
    assert store.recorded[0].event_id == poison.event_id
    ci = await js.consumer_info(STREAM, SPEC.durable)
    assert (ci.num_pending, ci.num_ack_pending) == (0, 0)


async def test_services_dead_letter_poison_and_admins_see_it(platform: Platform) -> None:
    """The running routing worker: a crafted undecodable message and an event about no referral."""
    nc: NATS = await nats.connect(platform.nats.url)
    conn = await asyncpg.connect(platform.dsn)
    try:
        js = nc.jetstream(timeout=5)
        crafted_id = str(uuid.uuid4())
        await js.publish("refnet.referral.received", b"\x00garbage", headers={"Nats-Msg-Id": crafted_id})
        ghost = ReferralReceived(
            referral_id=str(uuid.uuid4()), partner_id=platform.creds["partners"][0]["id"]
        )
        await js.publish(
            "refnet.referral.received", encode_event(ghost), headers={"Nats-Msg-Id": ghost.event_id}
        )

        async def both() -> bool:
            return bool(
                await conn.fetchval(
                    "SELECT count(*) = 2 FROM dead_letters WHERE consumer = 'routing' AND event_id = any($1::uuid[])",
                    [crafted_id, ghost.event_id],
                )
            )

        await wait_for(both, timeout=30)
        # The consumer is not blocked: a real referral submitted now is routed.
        async with httpx.AsyncClient(base_url=platform.base_url, timeout=10) as client:
            r = await client.post(
                "/v1/referrals",
                json=referral_body(),
                headers={"Authorization": f"Bearer {platform.partner_key(2)}"},
            )
            assert r.status_code == 201, r.text
            rid = r.json()["id"]

            async def routed() -> bool:
                status = await conn.fetchval("SELECT status FROM referrals WHERE id = $1", rid)
                return status in ("assigned", "unroutable")

            await wait_for(routed, timeout=30)

            admin = platform.staff_token(platform.creds["admins"][0])
            page = await client.get(
                "/v1/admin/dead-letters",
                params={"consumer": "routing"},
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert page.status_code == 200, page.text
            items = {i["event_id"]: i for i in page.json()["items"]}
            assert items[crafted_id]["reason"] == "undecodable"
            assert items[ghost.event_id]["reason"] == "poison"
            assert items[ghost.event_id]["error_class"] == "Poison"
            one = await client.get(
                f"/v1/admin/dead-letters/{items[crafted_id]['id']}",
                headers={"Authorization": f"Bearer {admin}"},
            )
            assert one.status_code == 200
            assert one.json()["payload_size"] == len(b"\x00garbage")
            # Admins only: a partner and a case manager are refused.
            partner = await client.get(
                "/v1/admin/dead-letters", headers={"Authorization": f"Bearer {platform.partner_key(0)}"}
            )
            assert partner.status_code == 403
            cm = platform.staff_token(platform.creds["case_managers"][0])
            assert (
                await client.get("/v1/admin/dead-letters", headers={"Authorization": f"Bearer {cm}"})
            ).status_code == 403
        # Row-level security: the service role sees nothing without the admin or system identity.
        app = await asyncpg.connect(platform.env["REFNET_DATABASE_URL"])
        try:
            assert await app.fetchval("SELECT count(*) FROM dead_letters") == 0
        finally:
            await app.close()
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
        await conn.close()


async def test_messages_delivered_after_the_last_fetch_are_handled_on_stop(js: JetStreamContext) -> None:
    """What the server delivered into the subscription's queue after the consume loop's last fetch gave
    up is found on a graceful stop (to be handled and acked then, like the rest), without asking the
    server for more; acked, nothing is left pending for the ack wait."""
    for _ in range(3):
        await _publish(js, "refnet.test.late", b"{}", str(uuid.uuid4()))
    sub = await js.pull_subscribe_bind(durable=SPEC.durable, stream=STREAM)
    # A pull request whose answer nobody fetches (what a fetch that timed out leaves behind).
    await js._nc.publish(sub._nms, json.dumps({"batch": 3}).encode(), sub._deliver)

    async def queued() -> bool:
        return sub.pending_msgs == 3

    await wait_for(queued, timeout=5)
    assert (await js.consumer_info(STREAM, SPEC.durable)).num_ack_pending == 3
    # The request above was answered in full: nothing of ours is open on the server.
    late = await _late_deliveries(sub, time.monotonic())
    assert len(late) == 3 and all(m.subject == "refnet.test.late" for m in late)
    assert sub.pending_msgs == 0
    for m in late:
        await m.ack_sync()

    async def none_pending() -> bool:
        info = await js.consumer_info(STREAM, SPEC.durable)
        return bool(info.num_ack_pending == 0 and info.num_pending == 0)

    await wait_for(none_pending, timeout=5)
    await sub.unsubscribe()


def test_nats_url_may_list_a_cluster() -> None:
    assert nats_servers("nats://a:4222, nats://b:4223,nats://c:4224 ") == [
        "nats://a:4222",
        "nats://b:4223",
        "nats://c:4224",
    ]
    assert nats_servers("nats://127.0.0.1:4222") == ["nats://127.0.0.1:4222"]
    with pytest.raises(ValueError, match="no NATS server"):
        nats_servers(" , ")


def test_consumer_settings_reach_the_consumer_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    from shared import bus
    from shared.config import ConfigError, load_settings

    settings = load_settings(
        {"REFNET_CONSUMER_ACK_WAIT_SECONDS": "2.5", "REFNET_CONSUMER_MAX_DELIVER": "7"}, database_url=""
    )
    monkeypatch.setattr(bus, "CONSUMERS", dict(bus.CONSUMERS))
    monkeypatch.setattr(bus, "_default_dead_letters", None)
    bus.configure_consumers(settings)
    assert {(s.ack_wait_s, s.max_deliver) for s in bus.CONSUMERS.values()} == {(2.5, 7)}
    # The server-side limit stays off: the consume loop decides, once the dead letter is recorded.
    assert bus.consumer_config(bus.CONSUMERS["routing"]).max_deliver == -1
    with pytest.raises(ConfigError, match="REFNET_CONSUMER_ACK_WAIT_SECONDS"):
        load_settings({"REFNET_CONSUMER_ACK_WAIT_SECONDS": "0"})


def test_dead_letter_error_text_keeps_no_quoted_values() -> None:
    exc = Exception(
        'null value in column "x" violates not-null constraint\nDETAIL: Failing row contains (Ana, 2009).'
    )
    assert safe_error_text(exc) == "null value in column … violates not-null constraint"
    exc = Exception("Key (email)=(ana@example.org) already exists: 'Ana Lopez'")
    assert safe_error_text(exc) == "Key (email)=(…) already exists: …"
    assert len(safe_error_text(Exception("x" * 1000))) == 300
