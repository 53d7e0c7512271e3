"""Webhook and email deliveries end to end inside notify: fan-out on a real database, the dispatcher
against a real local HTTP receiver and SMTP server, with a fast retry schedule."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import asyncpg
import pytest
from nats.aio.client import Client as NATS

from refnet_dev.embedded import EmbeddedNats
from services.intake.cases.followups import remind_followups
from services.notify import store
from services.notify.commands import serve_commands
from services.notify.dispatcher import Dispatcher
from services.notify.metrics import delivery_counts
from services.notify.reminders import remind_offers
from services.notify.subscribers import SubscriberChecks
from services.notify.worker import consumer_spec, make_handler
from shared.bus import Poison, connect
from shared.casework import local_date
from shared.commands import ReplayCommand, request_replay
from shared.config import Settings, load_settings
from shared.crypto import KeyRing
from shared.db import create_pool, service_dsn, transaction
from shared.events import (
    AnyEvent,
    AssignmentReminder,
    FollowupDue,
    ReferralStatusChanged,
    ReferralUnroutable,
    ReferralWithdrawn,
    WebhookTestRequested,
    decode_event,
    subject_for,
)
from shared.webhook_signing import new_secret, seal_secret, webhook_id
from tests.support.platform import wait_for
from tests.support.receivers import Reply, SmtpSink, WebhookReceiver, verify_standard_webhook

MASTER_KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
RING = KeyRing({"k1": MASTER_KEY}, "k1")


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    r = await WebhookReceiver().start()
    yield r
    await r.stop()


def make_settings(dsn: str, smtp: SmtpSink, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": service_dsn(dsn),
        "secret_key": "x",
        "pii_master_key": MASTER_KEY,
        "delivery_retry_schedule": "0.05,0.1,0.1",
        "delivery_retry_jitter": 0,
        "delivery_poll_seconds": 0.2,
        # Generous: a loaded machine must not turn a prompt answer into a timeout.
        "webhook_timeout_seconds": 3.0,
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_starttls": False,
        "base_url": "https://refnet.example",
    }
    values.update(overrides)
    return load_settings({}, **values)


class Env:
    """A seeded database, a pool as the services' role, settings, and a dispatcher to start."""

    def __init__(
        self, dsn: str, creds: dict[str, Any], pool: asyncpg.Pool, db: asyncpg.Pool, settings: Settings
    ) -> None:
        self.dsn = dsn
        self.creds = creds
        # pool: the services' role (row-level security applies), for the code under test;
        # db: the superuser, for arranging and inspecting.
        self.pool = pool
        self.db = db
        self.settings = settings
        self.partner = creds["partners"][0]["id"]
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, **overrides: Any) -> None:
        if overrides:
            self.settings = msgspec_replace(self.settings, **overrides)
        self._task = asyncio.create_task(Dispatcher(self.pool, self.settings).run(self._stop))

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)

    async def endpoint(self, url: str, partner: str | None = None) -> tuple[str, str]:
        eid, secret = str(uuid.uuid4()), new_secret()
        await self.db.execute(
            "INSERT INTO webhook_endpoints (id, partner_id, url, events, secret_sealed)"
            " VALUES ($1, $2, $3, '{referral.status_changed}', $4)",
            eid,
            partner or self.partner,
            url,
            seal_secret(RING, eid, secret),
        )
        return eid, secret

    async def referral(
        self,
        status: str = "assigned",
        scope: tuple[str, ...] = ("case_management", "share_status_with_referrer"),
    ) -> str:
        rid = str(uuid.uuid4())
        await self.db.execute(
            "INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years)"
            " VALUES ($1, $2, $3, 'south_la', '{housing}', 'en', 'routine', 16)",
            rid,
            self.partner,
            status,
        )
        await self.consent(rid, scope)
        return rid

    async def consent(self, rid: str, scope: tuple[str, ...]) -> None:
        """The youth's consent; with share_status_with_referrer the partner hears of status changes."""
        await self.db.execute(
            "INSERT INTO consents (referral_id, partner_id, method, scope, obtained_at, expires_at)"
            " VALUES ($1, $2, 'written', $3, now() - interval '1 day', now() + interval '1 year')",
            rid,
            self.partner,
            list(scope),
        )

    async def offer(self, rid: str, case_manager_id: str) -> str:
        """An open offer of ``rid`` to the case manager, answerable for four hours; its id."""
        aid = str(uuid.uuid4())
        await self.db.execute(
            "INSERT INTO assignments (id, referral_id, case_manager_id, state, respond_by)"
            " VALUES ($1, $2, $3, 'offered', now() + interval '4 hours')",
            aid,
            rid,
            case_manager_id,
        )
        return aid

    async def due_followup(
        self, case_manager_id: str, *, do_not_contact: bool = False
    ) -> tuple[str, date, Any]:
        """An engaged case the case manager accepted, its intake follow-up due today, and the
        ``case.followup_due`` event intake's sweep wrote for it (as in production): rid, due date, event."""
        rid = await self.referral("engaged")
        if do_not_contact:
            await self.db.execute("UPDATE referrals SET do_not_contact = true WHERE id = $1", rid)
        await self.db.execute(
            "INSERT INTO assignments (id, referral_id, case_manager_id, state, respond_by, responded_at)"
            " VALUES ($1, $2, $3, 'accepted', now(), now())",
            str(uuid.uuid4()),
            rid,
            case_manager_id,
        )
        due_on = local_date(datetime.now(UTC))
        await self.db.execute(
            "INSERT INTO followups (referral_id, point, due_on) VALUES ($1, 'intake', $2)", rid, due_on
        )
        assert await remind_followups(self.pool) == 1
        rows = await self.db.fetch("SELECT payload FROM outbox WHERE subject = 'refnet.case.followup_due'")
        (event,) = [decode_event(bytes(r["payload"])) for r in rows]
        return rid, due_on, event

    async def status_changed(self, rid: str, status: str = "assigned") -> ReferralStatusChanged:
        event = ReferralStatusChanged(
            referral_id=rid, partner_id=self.partner, status=status, previous_status="received"
        )
        await make_handler(self.pool, self.settings)(event)
        return event

    async def delivery(self, endpoint_id: str, event_id: str) -> asyncpg.Record:
        row = await self.db.fetchrow(
            "SELECT * FROM deliveries WHERE endpoint_id = $1 AND event_id = $2", endpoint_id, event_id
        )
        assert row is not None
        return row

    async def settled(self, delivery_id: Any, *states: str) -> asyncpg.Record:
        async def check() -> asyncpg.Record | None:
            row = await self.db.fetchrow("SELECT * FROM deliveries WHERE id = $1", delivery_id)
            return row if row is not None and row["state"] in states else None

        result: asyncpg.Record = await wait_for(check, timeout=15)
        return result

    async def attempts(self, delivery_id: Any) -> list[asyncpg.Record]:
        return await self.db.fetch(
            "SELECT * FROM delivery_attempts WHERE delivery_id = $1 ORDER BY id", delivery_id
        )

    async def counts(self) -> dict[str, dict[str, int]]:
        async with transaction(self.pool) as conn:
            return await delivery_counts(conn)


def msgspec_replace(settings: Settings, **changes: Any) -> Settings:
    import msgspec

    return msgspec.structs.replace(settings, **changes)


@pytest.fixture
async def env(seeded_db: tuple[str, dict[str, Any]], smtp: SmtpSink) -> AsyncIterator[Env]:
    dsn, creds = seeded_db
    pool = await create_pool(service_dsn(dsn), max_size=6)
    db = await create_pool(dsn, max_size=2)
    e = Env(dsn, creds, pool, db, make_settings(dsn, smtp))
    try:
        yield e
    finally:
        with contextlib.suppress(Exception):
            await e.stop()
        await pool.close()
        await db.close()


def _body(received: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(received.body)
    return doc


async def test_failing_receiver_is_retried_until_it_succeeds(env: Env, receiver: WebhookReceiver) -> None:
    url = receiver.script("/flaky", Reply(500), Reply(503), Reply(200))
    eid, secret = await env.endpoint(url)
    rid = await env.referral()
    event = await env.status_changed(rid)
    delivery = await env.delivery(eid, event.event_id)
    env.start()
    done = await env.settled(delivery["id"], "delivered", "dead")
    assert done["state"] == "delivered"
    assert done["attempts"] == 3

    got = receiver.received["/flaky"]
    assert len(got) == 3
    # One message: the same webhook-id on every attempt, each signature valid (timestamps may differ).
    assert {r.headers["webhook-id"] for r in got} == {webhook_id(delivery["id"])}
    for r in got:
        assert verify_standard_webhook(secret, r.headers, r.body), "signature does not verify"
        assert r.headers["content-type"] == "application/json"
    body = _body(got[-1])
    assert body == {
        "type": "referral.status_changed",
        "timestamp": body["timestamp"],
        "data": {"referral_id": rid, "status": "assigned", "previous_status": "received"},
    }
    assert datetime.fromisoformat(body["timestamp"]) == event.occurred_at

    log = await env.attempts(delivery["id"])
    assert [(a["attempt"], a["status_code"], a["outcome"]) for a in log] == [
        (1, 500, "retry"),
        (2, 503, "retry"),
        (3, 200, "delivered"),
    ]
    assert all(a["latency_ms"] > 0 for a in log)
    assert [a["error"] for a in log] == ["http_500", "http_503", None]
    health = await env.db.fetchrow("SELECT * FROM webhook_endpoints WHERE id = $1", eid)
    assert health is not None
    assert health["verified_at"] is not None
    assert (health["consecutive_failures"], health["failing_since"], health["state"]) == (0, None, "active")
    counts = (await env.counts())["webhook"]
    assert (counts["attempts"], counts["delivered"], counts["retried"], counts["dead_lettered"]) == (
        3,
        1,
        2,
        0,
    )


async def test_last_attempt_dead_letters_and_an_admin_replay_delivers(
    env: Env, receiver: WebhookReceiver
) -> None:
    url = receiver.script("/down", *[Reply(500)] * 4)
    eid, secret = await env.endpoint(url)
    event = await env.status_changed(await env.referral())
    delivery = await env.delivery(eid, event.event_id)
    env.start()
    dead = await env.settled(delivery["id"], "dead", "delivered")
    # The schedule has three retries: four attempts, then the dead-letter list.
    assert (dead["state"], dead["attempts"], dead["last_status"]) == ("dead", 4, 500)
    assert len(receiver.received["/down"]) == 4
    log = await env.attempts(delivery["id"])
    assert [a["outcome"] for a in log] == ["retry", "retry", "retry", "dead"]
    assert (await env.counts())["webhook"]["dead_lettered"] == 1
    assert (await env.counts())["webhook"]["dead"] == 1

    # The receiver is fixed (its script is spent: it answers 200 now); the admin replays.
    async with transaction(env.pool) as conn:
        replayed = await store.replay(conn, str(delivery["id"]))
    assert replayed["state"] == "pending"
    done = await env.settled(delivery["id"], "delivered")
    assert done["attempts"] == 5
    last = receiver.received["/down"][-1]
    assert last.headers["webhook-id"] == webhook_id(delivery["id"])
    assert verify_standard_webhook(secret, last.headers, last.body)
    async with transaction(env.pool) as conn:
        with pytest.raises(store.ReplayRefused):
            await store.replay(conn, str(delivery["id"]))


async def test_retry_after_is_honoured_and_throttles_the_endpoint(
    env: Env, receiver: WebhookReceiver
) -> None:
    url = receiver.script("/busy", Reply(429, (("Retry-After", "1"),)), Reply(200), Reply(200))
    eid, _ = await env.endpoint(url)
    first = await env.status_changed(await env.referral())
    d1 = await env.delivery(eid, first.event_id)
    env.start()
    await wait_for(lambda: _count(env.db, d1["id"]), timeout=10)
    # While the endpoint is throttled, a new delivery to it waits as well.
    second = await env.status_changed(await env.referral())
    d2 = await env.delivery(eid, second.event_id)
    await env.settled(d1["id"], "delivered")
    await env.settled(d2["id"], "delivered")

    (a1, a2) = await env.attempts(d1["id"])
    assert (a1["status_code"], a1["outcome"]) == (429, "throttled")
    assert a1["next_attempt_at"] - a1["started_at"] >= timedelta(seconds=1)
    assert a2["started_at"] >= a1["next_attempt_at"]
    throttled_until = await env.db.fetchval(
        "SELECT throttled_until FROM webhook_endpoints WHERE id = $1", eid
    )
    (b1,) = await env.attempts(d2["id"])
    assert b1["started_at"] >= throttled_until
    busy = receiver.received["/busy"]
    assert len(busy) == 3
    assert busy[1].at - busy[0].at >= 1.0


async def _count(pool: asyncpg.Pool, delivery_id: Any) -> int:
    return int(
        await pool.fetchval("SELECT count(*) FROM delivery_attempts WHERE delivery_id = $1", delivery_id)
    )


async def test_a_hanging_receiver_times_out_and_is_retried(env: Env, receiver: WebhookReceiver) -> None:
    url = receiver.script("/hang", Reply(hang=True), Reply(200))
    eid, _ = await env.endpoint(url)
    event = await env.status_changed(await env.referral())
    delivery = await env.delivery(eid, event.event_id)
    env.start(webhook_timeout_seconds=1.0)
    done = await env.settled(delivery["id"], "delivered", "dead")
    assert done["state"] == "delivered"
    log = await env.attempts(delivery["id"])
    assert [(a["status_code"], a["outcome"]) for a in log] == [(None, "retry"), (200, "delivered")]
    assert log[0]["error"] in {"Timeout", "ReadTimeout"}


async def test_gone_disables_the_endpoint_and_tells_the_partner(
    env: Env, receiver: WebhookReceiver, smtp: SmtpSink
) -> None:
    url = receiver.script("/gone", Reply(410))
    eid, _ = await env.endpoint(url)
    rid = await env.referral()
    first = await env.status_changed(rid)
    d1 = await env.delivery(eid, first.event_id)
    env.start()
    dead = await env.settled(d1["id"], "dead")
    assert dead["last_status"] == 410
    endpoint = await env.db.fetchrow(
        "SELECT state, disabled_reason FROM webhook_endpoints WHERE id = $1", eid
    )
    assert endpoint is not None
    assert (endpoint["state"], endpoint["disabled_reason"]) == ("disabled", "gone")
    # Later events find no active endpoint: nothing is queued for it.
    later = await env.status_changed(rid, "accepted")
    assert await env.db.fetchval("SELECT count(*) FROM deliveries WHERE event_id = $1", later.event_id) == 0
    # The partner's contact hears of it by email, the admins in-app.
    contact = await env.db.fetchval("SELECT contact_email FROM partners WHERE id = $1", env.partner)
    mails = await wait_for(lambda: _mails(smtp, contact), timeout=10)
    text = mails[0].get_content()
    assert eid in text
    assert rid not in text
    admins = await env.db.fetch("SELECT data FROM notifications WHERE kind = 'webhook_disabled'")
    assert len(admins) == len(env.creds["admins"])
    assert admins[0]["data"] == {"endpoint_id": eid, "partner_id": env.partner, "reason": "gone"}
    # A replay is refused while the endpoint is disabled.
    async with transaction(env.pool) as conn:
        with pytest.raises(store.ReplayRefused):
            await store.replay(conn, str(d1["id"]))


async def _mails(smtp: SmtpSink, address: str) -> list[Any]:
    return smtp.to(address)


async def test_sustained_failure_disables_the_endpoint(
    env: Env, receiver: WebhookReceiver, seeded_db: tuple[str, dict[str, Any]], smtp: SmtpSink
) -> None:
    url = receiver.script("/broken", *[Reply(500)] * 10)
    eid, _ = await env.endpoint(url)
    e1 = await env.status_changed(await env.referral())
    e2 = await env.status_changed(await env.referral())
    env.start(
        webhook_disable_after_failures=3,
        webhook_disable_after_seconds=0.0,
        delivery_retry_schedule="0.05,0.05,0.05,0.05,0.05,0.05",
    )

    async def disabled() -> bool:
        return bool(
            await env.db.fetchval("SELECT state FROM webhook_endpoints WHERE id = $1", eid) == "disabled"
        )

    await wait_for(disabled, timeout=10)
    for event in (e1, e2):
        row = await env.settled((await env.delivery(eid, event.event_id))["id"], "dead")
        assert row["state"] == "dead"
    reason = await env.db.fetchval("SELECT disabled_reason FROM webhook_endpoints WHERE id = $1", eid)
    assert reason == "failing"
    assert len(receiver.received["/broken"]) <= 4, "kept sending after the endpoint was disabled"


async def test_nothing_is_sent_about_a_withdrawn_referral(env: Env, receiver: WebhookReceiver) -> None:
    url = receiver.script("/w")
    eid, _ = await env.endpoint(url)
    rid = await env.referral()
    event = await env.status_changed(rid)
    delivery = await env.delivery(eid, event.event_id)
    # Consent is withdrawn before the dispatcher gets to it: checked at delivery time.
    await env.db.execute("UPDATE referrals SET status = 'withdrawn' WHERE id = $1", rid)
    env.start()
    row = await env.settled(delivery["id"], "cancelled", "delivered")
    assert (row["state"], row["last_error"], row["attempts"]) == ("cancelled", "referral_withdrawn", 0)
    assert receiver.received == {}
    assert (await env.counts())["webhook"]["suppressed"] == 1
    # And no new outbound message is created for it at all.
    later = await env.status_changed(rid, "withdrawn")
    assert await env.db.fetchval("SELECT count(*) FROM deliveries WHERE event_id = $1", later.event_id) == 0


async def test_status_webhooks_follow_the_youths_consent(env: Env, receiver: WebhookReceiver) -> None:
    """share_status_with_referrer, re-read from the database: without it notify queues no status webhook;
    a webhook queued while it held is cancelled when it is due if the consent no longer covers it."""
    eid, _ = await env.endpoint(receiver.script("/consent"))
    private = await env.referral(scope=("case_management", "evaluation"))
    event = await env.status_changed(private)
    assert await env.db.fetchval("SELECT count(*) FROM deliveries WHERE event_id = $1", event.event_id) == 0
    shared = await env.referral()
    event = await env.status_changed(shared)
    delivery = await env.delivery(eid, event.event_id)
    # The youth withdraws consent after engagement: the status stays, nothing more may leave.
    await env.db.execute("UPDATE consents SET withdrawn_at = now() WHERE referral_id = $1", shared)
    env.start()
    row = await env.settled(delivery["id"], "cancelled", "delivered")
    assert (row["state"], row["last_error"], row["attempts"]) == ("cancelled", "status_not_shared", 0)
    assert receiver.received == {}
    later = await env.status_changed(shared, "closed")
    assert await env.db.fetchval("SELECT count(*) FROM deliveries WHERE event_id = $1", later.event_id) == 0


async def test_withdrawal_event_cancels_waiting_deliveries(env: Env, receiver: WebhookReceiver) -> None:
    eid, _ = await env.endpoint(receiver.script("/x"))
    rid = await env.referral()
    event = await env.status_changed(rid)
    await env.db.execute("UPDATE referrals SET status = 'withdrawn' WHERE id = $1", rid)
    await make_handler(env.pool, env.settings)(
        ReferralWithdrawn(referral_id=rid, reason="consent_withdrawn", status="withdrawn")
    )
    row = await env.delivery(eid, event.event_id)
    assert (row["state"], row["last_error"]) == ("cancelled", "referral_withdrawn")


async def test_closing_tells_the_partner_why(env: Env) -> None:
    rid = str(uuid.uuid4())
    await env.db.execute(
        "INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years, close_reason)"
        " VALUES ($1, $2, 'closed', 'south_la', '{housing}', 'en', 'routine', 16, 'goals_met')",
        rid,
        env.partner,
    )
    await env.consent(rid, ("case_management", "share_status_with_referrer"))
    eid, _ = await env.endpoint("http://127.0.0.1:9/closed")
    closed = ReferralStatusChanged(
        referral_id=rid,
        partner_id=env.partner,
        status="closed",
        previous_status="engaged",
        close_reason="goals_met",
    )
    await make_handler(env.pool, env.settings)(closed)
    row = await env.delivery(eid, closed.event_id)
    assert row["payload"]["data"] == {
        "referral_id": rid,
        "status": "closed",
        "previous_status": "engaged",
        "close_reason": "goals_met",
    }
    # Any other status carries no close_reason at all (see the exact body in the first test).


async def test_recording_an_attempt_never_deadlocks_with_deleting_its_endpoint(
    env: Env, receiver: WebhookReceiver
) -> None:
    """DELETE /v1/webhooks/{id} locks the endpoint, then its deliveries. The dispatcher recording an
    attempt must take the endpoint first too: blocked behind the DELETE it holds no delivery row, so
    the DELETE's second step goes straight through (it once deadlocked and the partner got a 500)."""
    eid, _ = await env.endpoint(receiver.script("/deleted"))
    event = await env.status_changed(await env.referral())
    delivery = await env.delivery(eid, event.event_id)
    async with env.db.acquire() as delete, delete.transaction():
        # The DELETE must never wait for a delivery row. Shorter than deadlock_timeout (1 s), so with
        # the old order this statement fails rather than the recorder being chosen and retrying.
        await delete.execute("SET LOCAL lock_timeout = '300ms'")
        # services/intake/partners/webhooks.py remove (delete_webhook.sql), first statement: the endpoint row.
        await delete.execute(
            "UPDATE webhook_endpoints SET state = 'deleted', deleted_at = now(), updated_at = now(),"
            " secret_sealed = '', previous_secret_sealed = NULL, previous_secret_expires_at = NULL"
            " WHERE id = $1",
            eid,
        )
        env.start()  # the DELETE is not committed: the dispatcher still sees the endpoint and sends

        async def recorder_waits() -> bool:
            blocked = await env.db.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE $1 = any(pg_blocking_pids(pid))",
                delete.get_server_pid(),
            )
            return bool(blocked)

        await wait_for(recorder_waits, timeout=10)
        # Second statement: the endpoint's waiting deliveries.
        cancelled = await delete.fetchval(
            "WITH c AS (UPDATE deliveries SET state = 'cancelled', last_error = 'endpoint_deleted',"
            " updated_at = now() WHERE endpoint_id = $1 AND state IN ('pending', 'failed') RETURNING 1)"
            " SELECT count(*) FROM c",
            eid,
        )
    assert cancelled == 1
    # The recorder goes on after the DELETE commits: the attempt is logged, the row stays cancelled.
    await wait_for(lambda: _count(env.db, delivery["id"]), timeout=10)
    row = await env.db.fetchrow("SELECT state, last_error FROM deliveries WHERE id = $1", delivery["id"])
    assert row is not None
    assert (row["state"], row["last_error"]) == ("cancelled", "endpoint_deleted")
    assert len(receiver.received["/deleted"]) == 1


async def test_private_network_target_is_refused_at_delivery(env: Env) -> None:
    # Registered before the rules (or DNS) changed: the dispatcher refuses to connect.
    eid, _ = await env.endpoint("http://10.20.30.40:8080/hook")
    event = await env.status_changed(await env.referral())
    delivery = await env.delivery(eid, event.event_id)
    env.start()
    dead = await env.settled(delivery["id"], "dead")
    log = await env.attempts(delivery["id"])
    assert {a["error"] for a in log} == {"ssrf_private"}
    assert dead["last_error"] == "ssrf_private"


async def test_unroutable_goes_to_the_regions_supervisors_in_app_and_by_email(
    env: Env, smtp: SmtpSink
) -> None:
    south = next(s for s in env.creds["supervisors"] if s["region"] == "south_la")
    await env.db.execute("UPDATE staff SET email_notifications = true WHERE id = $1", south["id"])
    rid = await env.referral("unroutable")
    handle = make_handler(env.pool, env.settings)
    event = ReferralUnroutable(referral_id=rid, reason="no_eligible_case_manager", region="south_la")
    await handle(event)
    await handle(event)  # redelivered: nothing doubles
    rows = await env.db.fetch(
        "SELECT recipient_id, kind, data FROM notifications WHERE referral_id = $1", rid
    )
    assert [(str(r["recipient_id"]), r["kind"]) for r in rows] == [(south["id"], "unroutable")]
    env.start()
    mails = await wait_for(lambda: _mails(smtp, south["email"]), timeout=10)
    assert len(mails) == 1
    text = mails[0].get_content()
    assert "https://refnet.example/app/queue" in text
    for word in (rid, "south_la", "no_eligible", "housing"):
        assert word not in text

    # Out of area has no region: every supervisor's queue.
    out = await env.referral("unroutable")
    # notify takes the region from the referral, not from the event: an out-of-area one has none.
    await env.db.execute("UPDATE referrals SET region = NULL WHERE id = $1", out)
    await handle(ReferralUnroutable(referral_id=out, reason="out_of_area", region=None))
    n = await env.db.fetchval("SELECT count(*) FROM notifications WHERE referral_id = $1", out)
    assert n == len(env.creds["supervisors"])


async def test_reminder_before_respond_by_once(env: Env, smtp: SmtpSink) -> None:
    cm = env.creds["case_managers"][0]
    await env.db.execute("UPDATE staff SET email_notifications = true WHERE id = $1", cm["id"])
    rid = await env.referral()
    soon, later = str(uuid.uuid4()), str(uuid.uuid4())
    now = datetime.now(UTC)
    other = await env.referral()
    for aid, ref, offered, respond_by in (
        (soon, rid, now - timedelta(hours=3, minutes=30), now + timedelta(minutes=30)),
        (later, other, now, now + timedelta(hours=4)),
    ):
        await env.db.execute(
            "INSERT INTO assignments (id, referral_id, case_manager_id, state, offered_at, respond_by)"
            " VALUES ($1, $2, $3, 'offered', $4, $5)",
            aid,
            ref,
            cm["id"],
            offered,
            respond_by,
        )
    # Two sweeps (two notify workers, or one twice): one reminder.
    assert await remind_offers(env.pool, env.settings) == 1
    assert await remind_offers(env.pool, env.settings) == 0
    rows = await env.db.fetch("SELECT payload FROM outbox WHERE subject = 'refnet.assignment.reminder'")
    (event,) = [decode_event(bytes(r["payload"])) for r in rows]
    assert isinstance(event, AssignmentReminder)
    assert event.assignment_id == soon
    handle = make_handler(env.pool, env.settings)
    await handle(event)
    await handle(event)
    notes = await env.db.fetch(
        "SELECT kind, assignment_id FROM notifications WHERE recipient_id = $1", cm["id"]
    )
    assert [(n["kind"], str(n["assignment_id"])) for n in notes] == [("offer_reminder", soon)]
    env.start()
    mails = await wait_for(lambda: _mails(smtp, cm["email"]), timeout=10)
    assert len(mails) == 1
    assert "still waiting for your answer" in mails[0].get_content()

    # An offer answered before its reminder is handled gets none.
    await env.db.execute("UPDATE assignments SET state = 'accepted' WHERE id = $1", later)
    late = AssignmentReminder(
        referral_id=other, assignment_id=later, case_manager_id=cm["id"], respond_by=now
    )
    await handle(late)
    assert await env.db.fetchval("SELECT count(*) FROM notifications WHERE assignment_id = $1", later) == 0


async def test_followup_due_reaches_the_case_manager_in_app_and_by_email(env: Env, smtp: SmtpSink) -> None:
    cm = env.creds["case_managers"][0]
    await env.db.execute("UPDATE staff SET email_notifications = true WHERE id = $1", cm["id"])
    # Intake's sweep writes the in-app reminder and the event, as in production.
    rid, due_on, event = await env.due_followup(cm["id"], do_not_contact=True)
    assert isinstance(event, FollowupDue)
    assert (event.case_manager_id, event.do_not_contact) == (cm["id"], True)
    handle = make_handler(env.pool, env.settings)
    await handle(event)
    await handle(event)  # redelivered: nothing doubles

    notes = await env.db.fetch(
        "SELECT recipient_id, kind, data FROM notifications WHERE event_id = $1", event.event_id
    )
    assert [(str(n["recipient_id"]), n["kind"]) for n in notes] == [(cm["id"], "followup_due")]
    assert notes[0]["data"]["do_not_contact"] is True  # shown in the app, where it is acted on
    outbound = await env.db.fetch(
        "SELECT channel, staff_id, payload FROM deliveries WHERE event_id = $1", event.event_id
    )
    assert [(d["channel"], str(d["staff_id"])) for d in outbound] == [("email", cm["id"])]
    # The referral id and the due date: nothing else leaves, not even the contact preference.
    assert outbound[0]["payload"] == {"referral_id": rid, "due_on": due_on.isoformat()}

    env.start()
    (mail,) = await wait_for(lambda: _mails(smtp, cm["email"]), timeout=10)
    text = mail.get_content()
    assert f"https://refnet.example/app/cases/{rid}" in text
    assert due_on.strftime("%b %Y") in text
    assert "contact preference" in text
    for word in ("do_not_contact", "not to be contacted", "south_la", "housing"):
        assert word not in text

    # Someone who did not ask for email gets the in-app reminder only.
    other = env.creds["case_managers"][1]
    await env.db.execute("UPDATE staff SET email_notifications = false WHERE id = $1", other["id"])
    # Their own case (notify re-reads who holds it: a reminder naming someone else is dropped).
    theirs = await env.referral("engaged")
    await env.db.execute(
        "INSERT INTO assignments (id, referral_id, case_manager_id, state, respond_by, responded_at)"
        " VALUES ($1, $2, $3, 'accepted', now(), now())",
        str(uuid.uuid4()),
        theirs,
        other["id"],
    )
    quiet = FollowupDue(
        referral_id=theirs, followup="m3", due_on=due_on, case_manager_id=other["id"], do_not_contact=False
    )
    await handle(quiet)
    assert (
        await env.db.fetchval("SELECT count(*) FROM notifications WHERE event_id = $1", quiet.event_id) == 1
    )
    assert await env.db.fetchval("SELECT count(*) FROM deliveries WHERE event_id = $1", quiet.event_id) == 0
    # A reminder about the first case naming the other case manager (forged): nobody is told.
    forged = FollowupDue(referral_id=rid, followup="m3", due_on=due_on, case_manager_id=other["id"])
    await handle(forged)
    assert (
        await env.db.fetchval("SELECT count(*) FROM notifications WHERE event_id = $1", forged.event_id) == 0
    )


async def test_a_followup_recorded_before_its_reminder_went_out_cancels_the_email(
    env: Env, smtp: SmtpSink
) -> None:
    cm = env.creds["case_managers"][0]
    await env.db.execute("UPDATE staff SET email_notifications = true WHERE id = $1", cm["id"])
    rid, _, event = await env.due_followup(cm["id"])
    await make_handler(env.pool, env.settings)(event)
    (delivery,) = await env.db.fetch("SELECT id FROM deliveries WHERE event_id = $1", event.event_id)
    # The case manager records the follow-up while the reminder email still waits (e.g. SMTP was down).
    await env.db.execute(
        "UPDATE followups SET completed_at = now() WHERE referral_id = $1 AND point = 'intake'", rid
    )

    env.start()
    done = await env.settled(delivery["id"], "cancelled", "delivered", "failed", "dead")
    assert (done["state"], done["last_error"]) == ("cancelled", "followup_recorded")
    assert smtp.to(cm["email"]) == []


@pytest.fixture
def nats_url(tmp_path: Any) -> Iterator[str]:
    from refnet_dev.embedded import EmbeddedNats

    server = EmbeddedNats(tmp_path / "nats")
    url = server.start()
    yield url
    server.stop()


async def test_redelivered_jetstream_message_does_not_duplicate(
    env: Env, receiver: WebhookReceiver, nats_url: str
) -> None:
    """The handler commits its effect and then "crashes" before the ack: JetStream redelivers the
    message and the second run must change nothing — one in-app notification, one webhook."""
    from services.notify.worker import consumer_spec
    from shared.bus import connect, ensure_stream, run_consumer
    from shared.events import ReferralAssigned, encode_event, subject_for

    _, secret = await env.endpoint(receiver.script("/once"))
    rid = await env.referral()
    cm = env.creds["case_managers"][0]["id"]
    aid = await env.offer(rid, cm)
    events: list[AnyEvent] = [
        ReferralAssigned(
            referral_id=rid,
            assignment_id=aid,
            case_manager_id=cm,
            region="south_la",
            respond_by=datetime.now(UTC),
        ),
        ReferralStatusChanged(
            referral_id=rid, partner_id=env.partner, status="assigned", previous_status="received"
        ),
    ]
    real = make_handler(env.pool, env.settings)
    calls: dict[str, int] = {}

    async def crash_before_first_ack(event: AnyEvent) -> None:
        await real(event)
        calls[event.event_id] = calls.get(event.event_id, 0) + 1
        if calls[event.event_id] == 1:
            raise ConnectionResetError("lost the ack")

    nc = await connect(nats_url, "test-notify")
    stop = asyncio.Event()
    try:
        js = nc.jetstream()
        spec = consumer_spec()
        await ensure_stream(js, consumers=[spec])
        for e in events:
            await js.publish(subject_for(e), encode_event(e), headers={"Nats-Msg-Id": e.event_id})
        consuming = asyncio.create_task(run_consumer(js, spec, crash_before_first_ack, stop))

        async def settled() -> bool:
            info = await js.consumer_info("REFNET", spec.durable)
            redelivered = all(calls.get(e.event_id, 0) >= 2 for e in events)
            return redelivered and info.num_ack_pending == 0 and info.num_pending == 0

        await wait_for(settled, timeout=15)
        stop.set()
        await consuming
    finally:
        await nc.close()

    notes = await env.db.fetch("SELECT recipient_id, kind FROM notifications WHERE referral_id = $1", rid)
    assert [(str(n["recipient_id"]), n["kind"]) for n in notes] == [(cm, "offer")]
    deliveries = await env.db.fetch("SELECT id FROM deliveries WHERE referral_id = $1", rid)
    assert len(deliveries) == 1
    env.start()
    await env.settled(deliveries[0]["id"], "delivered")
    await asyncio.sleep(0.5)  # room for a (wrong) second webhook to show up
    got = receiver.received["/once"]
    assert len(got) == 1
    assert verify_standard_webhook(secret, got[0].headers, got[0].body)

    # Second wall: even if the processed-messages record were lost, the unique keys hold.
    await env.db.execute("DELETE FROM processed_messages WHERE consumer = 'notify'")
    for e in events:
        await real(e)
    assert await env.db.fetchval("SELECT count(*) FROM notifications WHERE referral_id = $1", rid) == 1
    assert await env.db.fetchval("SELECT count(*) FROM deliveries WHERE referral_id = $1", rid) == 1


async def test_master_key_rotation_rewraps_webhook_secrets(env: Env) -> None:
    """Webhook secrets are sealed with the PII master key: rotation must re-wrap them before the old
    key is retired; `refnet keys rotate` must call these."""
    from shared.crypto import generate_master_key
    from shared.webhook_signing import open_secret

    eid, secret = await env.endpoint("http://127.0.0.1:9/x")
    k2 = generate_master_key()
    async with transaction(env.pool) as conn:
        assert await store.secret_key_ids(conn) == {"k1"}
        assert await store.rewrap_secrets(conn, KeyRing({"k1": MASTER_KEY, "k2": k2}, "k2")) == 1
        assert await store.secret_key_ids(conn) == {"k2"}
    sealed = await env.db.fetchval("SELECT secret_sealed FROM webhook_endpoints WHERE id = $1", eid)
    assert open_secret(KeyRing({"k2": k2}, "k2"), eid, bytes(sealed)) == secret


async def test_an_offer_reassigned_by_hand_tells_its_first_case_manager(env: Env) -> None:
    """Routing's manual assignment cancels the open offer and outboxes assignment.cancelled: the case
    manager who held it learns in-app (ids and a reason code; their inbox page listens for this kind)."""
    from services.routing.manual import assign_manually
    from services.routing.rules import load_rules
    from shared.db import Identity
    from shared.events import AssignmentCancelled

    south = [c for c in env.creds["case_managers"] if "south_la" in c["regions"]]
    first, second = south[0]["id"], south[1]["id"]
    rid = await env.referral("assigned")
    await env.offer(rid, first)
    sup = next(s for s in env.creds["supervisors"] if s["region"] == "south_la")
    supervisor = Identity(role="supervisor", actor_id=sup["id"], region="south_la")
    async with transaction(env.pool, supervisor) as conn:
        await assign_manually(
            conn, supervisor, uuid.UUID(rid), uuid.UUID(second), "Speaks Tagalog.", load_rules()
        )
    rows = await env.db.fetch("SELECT payload FROM outbox WHERE subject = 'refnet.assignment.cancelled'")
    (event,) = [decode_event(bytes(r["payload"])) for r in rows]
    assert isinstance(event, AssignmentCancelled)

    handle = make_handler(env.pool, env.settings)
    await handle(event)
    await handle(event)  # redelivered: nothing doubles
    notes = await env.db.fetch(
        "SELECT recipient_id, kind, referral_id, assignment_id, data FROM notifications WHERE event_id = $1",
        event.event_id,
    )
    assert [(str(n["recipient_id"]), n["kind"], str(n["referral_id"])) for n in notes] == [
        (first, "offer_cancelled", rid)
    ]
    assert str(notes[0]["assignment_id"]) == event.assignment_id
    assert notes[0]["data"] == {"reason": "reassigned_by_hand"}
    # Nothing leaves the platform for it: no email, no webhook.
    assert await env.db.fetchval("SELECT count(*) FROM deliveries WHERE event_id = $1", event.event_id) == 0


# -- commands and requests from intake: the replay command, the webhook test event ----------------------


@pytest.fixture
async def bus(tmp_path: Path, env: Env) -> AsyncIterator[NATS]:
    """A nats-server, notify's replay endpoint on it, and a client connection (intake's side)."""
    server = EmbeddedNats(tmp_path / "nats")
    url = server.start()
    notify_nc = await connect(url, "test-notify")
    service = await serve_commands(notify_nc, env.pool, env.settings)
    client = await connect(url, "test-intake")
    try:
        yield client
    finally:
        await client.close()
        await service.stop()
        await notify_nc.close()
        server.stop()


async def _dead_delivery(env: Env, url: str) -> tuple[asyncpg.Record, str]:
    """A webhook delivery already in the dead-letter list (its attempts spent), and its endpoint's secret."""
    eid, secret = await env.endpoint(url)
    event = await env.status_changed(await env.referral())
    delivery = await env.delivery(eid, event.event_id)
    await env.db.execute("UPDATE deliveries SET state = 'dead', attempts = 4 WHERE id = $1", delivery["id"])
    return delivery, secret


def _replay(delivery_id: str, actor: dict[str, Any], role: str = "admin") -> ReplayCommand:
    return ReplayCommand(delivery_id=delivery_id, actor_id=actor["id"], actor_role=role, request_id="req-9")


async def _replays_audited(env: Env, delivery_id: str) -> list[asyncpg.Record]:
    return await env.db.fetch(
        "SELECT actor_role, actor_id, target_type FROM audit_log WHERE action = 'delivery.replay' AND target_id = $1",
        delivery_id,
    )


async def test_an_admin_replay_through_notify_is_audited_and_wakes_the_dispatcher(
    env: Env, bus: NATS, receiver: WebhookReceiver
) -> None:
    admin = env.creds["admins"][0]
    delivery, secret = await _dead_delivery(env, receiver.script("/back", Reply(200)))
    did = str(delivery["id"])
    # Polling too slowly to matter within the test: only the replay's NOTIFY can wake the dispatcher.
    env.start(delivery_poll_seconds=60.0)

    reply = await request_replay(bus, _replay(did, admin))

    assert (reply.status, reply.message) == (202, "")
    audited = await _replays_audited(env, did)
    assert [(a["actor_role"], a["actor_id"], a["target_type"]) for a in audited] == [
        ("admin", admin["id"], "delivery")
    ]
    done = await env.settled(delivery["id"], "delivered")
    assert (done["attempts"], done["round_start"]) == (5, 4)
    (got,) = receiver.received["/back"]
    assert got.headers["webhook-id"] == webhook_id(did)
    assert verify_standard_webhook(secret, got.headers, got.body)

    again = await request_replay(bus, _replay(did, admin))
    assert (again.status, again.message) == (
        409,
        "Only dead deliveries can be replayed (this one is delivered).",
    )
    for unknown in (str(uuid.uuid4()), "not-an-id"):
        missing = await request_replay(bus, _replay(unknown, admin))
        assert (missing.status, missing.message) == (404, "No such delivery.")
    assert len(await _replays_audited(env, did)) == 1


async def test_a_replay_is_refused_while_its_endpoint_is_disabled(
    env: Env, bus: NATS, receiver: WebhookReceiver
) -> None:
    delivery, _ = await _dead_delivery(env, receiver.script("/off", Reply(200)))
    await env.db.execute(
        "UPDATE webhook_endpoints SET state = 'disabled' WHERE id = $1", delivery["endpoint_id"]
    )
    reply = await request_replay(bus, _replay(str(delivery["id"]), env.creds["admins"][0]))
    assert (reply.status, reply.message) == (
        409,
        "The webhook endpoint is disabled; the partner must re-enable it first.",
    )
    assert await _replays_audited(env, str(delivery["id"])) == []


async def test_forged_replay_actors_are_refused(env: Env, bus: NATS, receiver: WebhookReceiver) -> None:
    delivery, _ = await _dead_delivery(env, receiver.script("/never", Reply(200)))
    did = str(delivery["id"])
    sup = env.creds["supervisors"][0]
    forged = [
        _replay(did, sup),  # a supervisor claiming to be an admin
        _replay(did, sup, role="supervisor"),  # truthfully a supervisor: not an admin
        _replay(did, env.creds["case_managers"][0]),
        _replay(did, {"id": str(uuid.uuid4())}),
        _replay(did, {"id": "x"}),
    ]
    for command in forged:
        assert (await request_replay(bus, command)).status == 403, command
    admin = env.creds["admins"][0]
    await env.db.execute("UPDATE staff SET deactivated_at = now() WHERE id = $1", admin["id"])
    assert (await request_replay(bus, _replay(did, admin))).status == 403
    assert await env.db.fetchval("SELECT state FROM deliveries WHERE id = $1", delivery["id"]) == "dead"
    assert await _replays_audited(env, did) == []


async def test_webhook_test_requested_sends_a_signed_test_under_the_chosen_id(
    env: Env, receiver: WebhookReceiver
) -> None:
    eid, secret = await env.endpoint(receiver.script("/hook", Reply(200)))
    delivery_id = str(uuid.uuid4())
    event = WebhookTestRequested(endpoint_id=eid, partner_id=env.partner, delivery_id=delivery_id)
    handle = make_handler(env.pool, env.settings)
    await handle(event)
    await handle(event)  # redelivered: one delivery, one claim
    rows = await env.db.fetch(
        "SELECT id, kind, endpoint_id, partner_id, payload FROM deliveries WHERE event_id = $1",
        event.event_id,
    )
    assert [(str(r["id"]), r["kind"], str(r["endpoint_id"]), str(r["partner_id"])) for r in rows] == [
        (delivery_id, "webhook.test", eid, env.partner)
    ]
    assert rows[0]["payload"]["data"] == {"endpoint_id": eid}
    assert (
        await env.db.fetchval("SELECT count(*) FROM processed_messages WHERE event_id = $1", event.event_id)
        == 1
    )
    env.start()
    await env.settled(uuid.UUID(delivery_id), "delivered")
    (got,) = receiver.received["/hook"]
    assert got.headers["webhook-id"] == webhook_id(delivery_id)
    assert verify_standard_webhook(secret, got.headers, got.body)
    assert _body(got)["type"] == "webhook.test"


async def test_webhook_test_requests_that_disagree_with_the_database_are_dropped(
    env: Env, receiver: WebhookReceiver
) -> None:
    """The event's ids are intake's word: notify sends nothing for another partner's endpoint, a
    disabled or deleted one, or none at all, and records the event as handled (no retry loop)."""
    url = receiver.script("/nope", Reply(200))
    eid, _ = await env.endpoint(url)
    other_partner = env.creds["partners"][1]["id"]
    disabled, _ = await env.endpoint(url)
    await env.db.execute("UPDATE webhook_endpoints SET state = 'disabled' WHERE id = $1", disabled)
    deleted, _ = await env.endpoint(url)
    await env.db.execute("UPDATE webhook_endpoints SET state = 'deleted' WHERE id = $1", deleted)
    events = [
        WebhookTestRequested(endpoint_id=eid, partner_id=other_partner, delivery_id=str(uuid.uuid4())),
        WebhookTestRequested(endpoint_id=disabled, partner_id=env.partner, delivery_id=str(uuid.uuid4())),
        WebhookTestRequested(endpoint_id=deleted, partner_id=env.partner, delivery_id=str(uuid.uuid4())),
        WebhookTestRequested(
            endpoint_id=str(uuid.uuid4()), partner_id=env.partner, delivery_id=str(uuid.uuid4())
        ),
    ]
    handle = make_handler(env.pool, env.settings)
    for event in events:
        await handle(event)
    ids = [e.event_id for e in events]
    assert await env.db.fetchval("SELECT count(*) FROM deliveries WHERE event_id = any($1::uuid[])", ids) == 0
    assert (
        await env.db.fetchval("SELECT count(*) FROM processed_messages WHERE event_id = any($1::uuid[])", ids)
        == 4
    )
    with pytest.raises(Poison):
        await handle(
            WebhookTestRequested(endpoint_id="x", partner_id=env.partner, delivery_id=str(uuid.uuid4()))
        )


def test_notify_consumes_webhook_test_requests() -> None:
    assert (
        subject_for(WebhookTestRequested(endpoint_id="e", partner_id="p", delivery_id="d"))
        in consumer_spec().subjects
    )


class _Counting:
    """The services' pool, counting the statements run through it; each waits for `gate` to open."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.statements: list[int] = []
        self.gate = asyncio.Event()

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        self.statements.append(len(args[0]))
        await self.gate.wait()
        return await self.pool.fetch(sql, *args)


async def test_status_changes_at_the_same_moment_ask_for_subscribers_in_one_statement(env: Env) -> None:
    # Whether a status change has anyone to tell, asked by every event notify has in hand: those asked
    # together share one statement, and each gets its own partner's answer.
    subscribed, other = env.partner, env.creds["partners"][1]["id"]
    await env.endpoint("https://example.org/hook")
    counting = _Counting(env.pool)
    checks = SubscriberChecks(cast(asyncpg.Pool, counting), ("referral.status_changed", "task.updated"))
    first = asyncio.create_task(checks(other))
    await asyncio.sleep(0.05)
    assert counting.statements == [1]  # asked alone: no wait when idle
    later = asyncio.gather(checks(subscribed), checks(str(uuid.uuid4())), checks(subscribed), checks(other))
    await asyncio.sleep(0.05)
    assert counting.statements == [1]  # the others wait for the statement in flight
    counting.gate.set()
    assert await first is False
    assert list(await later) == [True, False, True, False]
    assert counting.statements == [1, 3]  # then go together, each partner once
    # A malformed id is that event's poison, not its neighbours' failure.
    bad, good = await asyncio.gather(checks("not-a-uuid"), checks(subscribed), return_exceptions=True)
    assert isinstance(bad, Poison) and good is True
    # An endpoint that stops being active is seen by the next question.
    await env.db.execute("UPDATE webhook_endpoints SET state = 'disabled' WHERE partner_id = $1", subscribed)
    assert await checks(subscribed) is False
