"""NATS JetStream: connection, the REFNET stream and durable consumers as code, and the consume loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import asyncpg
import msgspec
import nats
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from shared.db import SYSTEM, create_pool, load_sql, transaction
from shared.events import SUBJECT_PREFIX, AnyEvent, decode_event

if TYPE_CHECKING:
    from shared.config import Settings

__all__ = [
    "CONSUMERS",
    "PUBLISHES",
    "STREAM",
    "ConsumerSpec",
    "DeadLetter",
    "DeadLetterStore",
    "Poison",
    "claim_event",
    "configure_consumers",
    "connect",
    "ensure_stream",
    "nats_authorization",
    "nats_permissions",
    "nats_servers",
    "run_consumer",
]

log = structlog.get_logger("refnet.bus")

STREAM = "REFNET"
# The relay may retry a publish long after the first attempt (NATS down, relay restarted); the
# dedup window must cover that so Nats-Msg-Id keeps duplicates out of the stream.
DUPLICATE_WINDOW_S = 15 * 60.0
MAX_AGE_S = 14 * 24 * 3600.0


class ConsumerSpec(msgspec.Struct, frozen=True):
    durable: str
    subjects: tuple[str, ...]
    ack_wait_s: float = 30.0
    max_deliver: int = 20
    max_ack_pending: int = 1000


CONSUMERS: dict[str, ConsumerSpec] = {
    "routing": ConsumerSpec(
        "routing", ("refnet.referral.received", "refnet.assignment.declined", "refnet.referral.withdrawn")
    ),
    "notify": ConsumerSpec(
        "notify",
        (
            "refnet.referral.assigned",
            "refnet.referral.unroutable",
            "refnet.referral.status_changed",
            "refnet.referral.withdrawn",
            "refnet.assignment.expired",
            "refnet.assignment.reminder",
            "refnet.assignment.cancelled",
            "refnet.case.followup_due",
            "refnet.webhook.test_requested",
            "refnet.case.consent_expiring",
            "refnet.protocol.overdue",
        ),
    ),
}


# The events each service emits: its NATS user may publish only these, and its outbox relay claims only
# these (rows any process wrote). status_changed comes from intake (accept, close) and routing (assign).
PUBLISHES: dict[str, tuple[str, ...]] = {
    service: tuple(SUBJECT_PREFIX + tag for tag in tags)
    for service, tags in {
        "intake": (
            "referral.received",
            "referral.status_changed",
            "referral.withdrawn",
            "assignment.accepted",
            "assignment.declined",
            "case.followup_due",
            "case.consent_expiring",
            "webhook.test_requested",
            "protocol.overdue",
        ),
        "routing": (
            "referral.assigned",
            "referral.unroutable",
            "referral.status_changed",
            "assignment.expired",
            "assignment.cancelled",
        ),
        "notify": ("assignment.reminder",),
    }.items()
}
# Command subjects (shared.commands) each service serves; intake asks them.
_SERVES = {"routing": "cmd.refnet.routing.>", "notify": "cmd.refnet.notify.>"}


def nats_permissions(service: str) -> dict[str, object]:
    """The NATS permissions of a service's user: publish its own events and its commands' answers, use the
    JetStream API for the REFNET stream and its own consumer, and nothing destructive or anyone else's."""
    own = CONSUMERS.get(service)
    others = [c.durable for name, c in CONSUMERS.items() if name != service]
    deny = [
        "$JS.API.STREAM.DELETE.>",
        "$JS.API.STREAM.PURGE.>",
        "$JS.API.STREAM.MSG.DELETE.>",
        "$JS.API.CONSUMER.DELETE.>",
        # Another service's consumer: taking (and acking) its messages would make its events vanish, and
        # redefining or pausing it would stop them. Reading its info (the dashboard's lag) stays allowed.
        *(f"$JS.API.CONSUMER.CREATE.{STREAM}.{d}" for d in others),
        *(f"$JS.API.CONSUMER.CREATE.{STREAM}.{d}.>" for d in others),
        *(f"$JS.API.CONSUMER.DURABLE.CREATE.{STREAM}.{d}" for d in others),
        *(f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{d}" for d in others),
        *(f"$JS.API.CONSUMER.PAUSE.{STREAM}.{d}" for d in others),
    ]
    publish = [*PUBLISHES.get(service, ()), "$JS.API.>"]
    subscribe = ["_INBOX.>"]
    if own is not None:
        publish.append(f"$JS.ACK.{STREAM}.{own.durable}.>")
    if service in _SERVES:
        subscribe += [_SERVES[service], "$SRV.>"]
    else:
        publish.append("cmd.refnet.>")  # intake asks routing and notify to act
    return {
        "publish": {"allow": publish, "deny": deny},
        "subscribe": {"allow": subscribe},
        # Answers to the requests it received (commands, $SRV discovery) and nothing else.
        "allow_responses": True,
    }


def nats_authorization(passwords: Mapping[str, str]) -> str:
    """nats-server configuration (JSON is valid there) requiring a user for every client: each service
    with its permissions, and ``admin`` (tooling, tests) without restriction. A password written ``$NAME``
    is left for nats-server to take from its environment (deploy/: the config holds no secret)."""
    users: list[dict[str, object]] = []
    for user, password in sorted(passwords.items()):
        entry: dict[str, object] = {"user": user, "password": password}
        if user != "admin":
            entry["permissions"] = nats_permissions(user)
        users.append(entry)
    text = json.dumps({"users": users}, indent=2)
    # nats-server reads $NAME as a variable only unquoted.
    text = re.sub(r'"password": "(\$[A-Z_][A-Z0-9_]*)"', r'"password": \1', text)
    return "authorization: " + text + "\n"


class Poison(Exception):
    """The message can never succeed (undecodable, refers to nothing): terminate, do not retry."""


def nats_servers(url: str) -> list[str]:
    """``REFNET_NATS_URL`` may name several servers (a cluster), comma-separated."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    if not servers:
        raise ValueError("no NATS server URL given")
    return servers


async def connect(url: str, name: str, user: str = "", password: str = "") -> NATS:
    async def on_error(exc: Exception) -> None:
        log.warning("nats.error", error=str(exc))

    async def on_disconnect() -> None:
        log.warning("nats.disconnected")

    async def on_reconnect() -> None:
        log.info("nats.reconnected")

    async def on_closed() -> None:
        log.info("nats.closed")

    return await nats.connect(
        # Every listed server is tried (and the cluster's others are learnt from it), so a client
        # survives losing the node it happened to be connected to.
        servers=nats_servers(url),
        name=name,
        # The server refuses clients without credentials (the embedded one and deploy/'s); a user's
        # permissions limit what it may publish and consume.
        **({"user": user, "password": password} if user else {}),
        # Never give up: a service outliving a NATS outage must resume on its own.
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.5,
        connect_timeout=5,
        allow_reconnect=True,
        error_cb=on_error,
        disconnected_cb=on_disconnect,
        reconnected_cb=on_reconnect,
        closed_cb=on_closed,
    )


def stream_config(replicas: int = 1) -> StreamConfig:
    return StreamConfig(
        name=STREAM,
        subjects=["refnet.>"],
        storage=StorageType.FILE,
        duplicate_window=DUPLICATE_WINDOW_S,
        max_age=MAX_AGE_S,
        num_replicas=replicas,
    )


def consumer_config(spec: ConsumerSpec) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=spec.durable,
        name=spec.durable,
        filter_subjects=list(spec.subjects),
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL,
        ack_wait=spec.ack_wait_s,
        # The server never gives up on a message by itself: the consume loop dead-letters it once a
        # delivery numbered max_deliver still fails AND the dead letter is recorded. A server-side
        # limit would silently drop the message if that last attempt could not record it.
        max_deliver=-1,
        max_ack_pending=spec.max_ack_pending,
    )


async def ensure_stream(
    js: JetStreamContext, replicas: int = 1, consumers: Sequence[ConsumerSpec] = ()
) -> None:
    """Create or update the stream and the given durable consumers to match the code."""
    cfg = stream_config(replicas)
    try:
        await js.stream_info(STREAM)
    except nats.js.errors.NotFoundError:
        await js.add_stream(cfg)
    else:
        await js.update_stream(cfg)
    for spec in consumers:
        # Creating a durable with its existing name updates the mutable parts of its config.
        await js.add_consumer(STREAM, consumer_config(spec))


async def claim_event(conn: asyncpg.Connection, consumer: str, event_id: str) -> bool:
    """Record ``event_id`` as processed by ``consumer`` inside the caller's transaction.

    False means an earlier delivery already committed its effect: skip and ack.
    """
    row = await conn.fetchval(load_sql("shared", "claim_event"), consumer, event_id)
    return row is not None


Handler = Callable[[AnyEvent], Awaitable[None]]


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message the consumer gave up on: what it was, how often it was tried, and why it failed."""

    consumer: str
    subject: str
    event_id: str | None
    stream_seq: int
    delivery_count: int
    reason: str  # poison | undecodable | exhausted
    error_class: str
    error_message: str
    payload: bytes


# Values quoted in error texts (PostgreSQL's `Key (x)=(...)`, "..." and '...' literals) may echo data;
# only the shape of the message is kept.
_QUOTED = re.compile(r"=\([^)]*\)|\"[^\"]*\"|'[^']*'")


def safe_error_text(exc: BaseException) -> str:
    """The error's first line with quoted values removed, at most 300 characters."""
    lines = str(exc).strip().splitlines()
    return _QUOTED.sub(lambda m: "=(…)" if m.group(0).startswith("=") else "…", lines[0] if lines else "")[
        :300
    ]


class DeadLetterStore:
    """Records dead letters in the ``dead_letters`` table, each in its own short transaction.

    Holds its own tiny pool (created on first use) so a consumer loop can record without the
    service's pool; or give it one.
    """

    def __init__(self, dsn: str = "", *, pool: asyncpg.Pool | None = None) -> None:
        self._dsn = dsn
        self._pool = pool
        self._own_pool = pool is None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await create_pool(self._dsn, min_size=0, max_size=2)
        return self._pool

    async def record(self, letter: DeadLetter) -> None:
        pool = await self._get_pool()
        async with transaction(pool, SYSTEM) as conn:
            await conn.execute(
                load_sql("shared", "record_dead_letter"),
                letter.consumer,
                letter.subject,
                letter.event_id,
                letter.stream_seq,
                letter.delivery_count,
                letter.reason,
                letter.error_class,
                letter.error_message,
                letter.payload,
            )

    async def close(self) -> None:
        if self._own_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), timeout=5)


# Set by configure_consumers() in service processes; run_consumer uses it unless given a store.
_default_dead_letters: DeadLetterStore | None = None


def configure_consumers(settings: Settings) -> None:
    """Apply the operator's consumer settings (ack wait, max deliveries) to CONSUMERS and record
    dead letters in the service's database. Called once at process start, before the workers run."""
    global _default_dead_letters
    for name, spec in list(CONSUMERS.items()):
        CONSUMERS[name] = msgspec.structs.replace(
            spec, ack_wait_s=settings.consumer_ack_wait_seconds, max_deliver=settings.consumer_max_deliver
        )
    _default_dead_letters = DeadLetterStore(settings.database_url) if settings.database_url else None


def _retry_delay(num_delivered: int) -> float:
    return float(min(30.0, 0.5 * 2 ** max(0, num_delivered - 1)))


def _msg_event_id(msg: Msg) -> str | None:
    raw = (msg.headers or {}).get("Nats-Msg-Id", "")
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return None


async def _dead_letter(
    spec: ConsumerSpec,
    msg: Msg,
    delivered: int,
    reason: str,
    exc: BaseException,
    event_id: str | None,
    store: DeadLetterStore | None,
) -> None:
    """Record the message as a dead letter, then terminate it; if it cannot be recorded, keep it."""
    letter = DeadLetter(
        consumer=spec.durable,
        subject=msg.subject,
        event_id=event_id or _msg_event_id(msg),
        stream_seq=msg.metadata.sequence.stream if msg.metadata else 0,
        delivery_count=delivered,
        reason=reason,
        error_class=type(exc).__name__,
        error_message=safe_error_text(exc),
        payload=bytes(msg.data),
    )
    if store is not None:
        try:
            await store.record(letter)
        except Exception as rec_exc:
            # Most likely the database is away: the message must not vanish unrecorded, so it stays
            # with the consumer and is tried (and, failing again, recorded) later.
            log.warning(
                "consumer.dead_letter_failed",
                consumer=spec.durable,
                error=type(rec_exc).__name__,
                stream_seq=letter.stream_seq,
            )
            with contextlib.suppress(Exception):
                await msg.nak(delay=_retry_delay(delivered))
            return
    log.error(
        "consumer.dead_lettered" if store is not None else "consumer.dead_letter_unrecorded",
        consumer=spec.durable,
        subject=letter.subject,
        event_id=letter.event_id,
        stream_seq=letter.stream_seq,
        delivery=delivered,
        reason=reason,
        error=letter.error_class,
        detail=letter.error_message,
    )
    with contextlib.suppress(Exception):
        await msg.term()


async def _handle_one(
    spec: ConsumerSpec, handler: Handler, msg: Msg, dead_letters: DeadLetterStore | None = None
) -> None:
    delivered = msg.metadata.num_delivered if msg.metadata else 1
    try:
        event = decode_event(msg.data)
    except msgspec.DecodeError as exc:
        await _dead_letter(spec, msg, delivered, "undecodable", exc, None, dead_letters)
        return
    # Every message is handled in a task of its own (run_consumer), whose context is a copy that ends
    # with it: binding is enough. bound_contextvars (which first copies the whole context to restore
    # it afterwards) was 5% of notify's busy samples at 1,000 referrals/s.
    structlog.contextvars.bind_contextvars(
        event_id=event.event_id, trace_id=event.trace_id, event_type=msg.subject, delivery=delivered
    )
    try:
        await handler(event)
    except Poison as exc:
        await _dead_letter(spec, msg, delivered, "poison", exc, event.event_id, dead_letters)
        return
    except Exception as exc:
        if delivered >= spec.max_deliver:
            await _dead_letter(spec, msg, delivered, "exhausted", exc, event.event_id, dead_letters)
            return
        delay = _retry_delay(delivered)
        log.warning(
            "consumer.retry",
            consumer=spec.durable,
            error=type(exc).__name__,
            detail=safe_error_text(exc)[:200],
            retry_in_s=delay,
        )
        with contextlib.suppress(Exception):
            await msg.nak(delay=delay)
        return
    # Ack only after the effect committed; a lost ack means a redelivery that claim_event skips.
    try:
        await msg.ack_sync(timeout=5)
    except Exception as exc:
        log.warning("consumer.ack_failed", consumer=spec.durable, error=type(exc).__name__)


# Pull requests reach the server a little after the client sends them, so they expire there a little
# later than the client's own timeout; wait this much more before taking what they delivered.
_LATE_MARGIN_S = 0.1


async def _late_deliveries(sub: JetStreamContext.PullSubscription, requests_end: float) -> list[Msg]:
    """The messages the server delivered into the subscription after the consume loop's last fetch gave
    up on them (a fetch times out on the client while the server is still answering it).

    First wait until every pull request the subscription opened has expired on the server
    (``requests_end``, a monotonic time, plus a margin): until then a late one can still arrive. Then read
    the buffer itself, not with ``fetch()``: a fetch that finds only status messages asks the server for
    more, which would start the whole thing again.
    """
    await asyncio.sleep(max(0.0, requests_end - time.monotonic()) + _LATE_MARGIN_S)
    # The pull subscription's own message queue: nats-py offers no public way to read it without asking
    # the server for more.
    inner = sub._sub
    late: list[Msg] = []
    for _ in range(inner.pending_msgs):
        try:
            m = await inner.next_msg(timeout=0.01)
        except Exception:
            break
        # Status messages (no messages, timeouts, heartbeats) have no ack subject.
        if (m.reply or "").startswith("$JS.ACK."):
            late.append(m)
    return late


async def run_consumer(
    js: JetStreamContext,
    spec: ConsumerSpec,
    handler: Handler,
    stop: asyncio.Event,
    *,
    concurrency: int = 32,
    dead_letters: DeadLetterStore | None = None,
) -> None:
    """Pull from the durable consumer until ``stop`` is set, handling up to ``concurrency`` messages at once.

    Messages are handled as they arrive rather than in whole batches: a lingering fetch returns only
    when its batch is full or it times out, so an idle consumer long-polls for one message and a busy
    one takes whatever is already waiting without lingering.

    A message whose handler raises Poison, that cannot be decoded, or that still fails on delivery
    ``spec.max_deliver`` is recorded in ``dead_letters`` (default: the store configure_consumers set up)
    and terminated, so it cannot block the consumer.
    """
    store = dead_letters if dead_letters is not None else _default_dead_letters
    sub: JetStreamContext.PullSubscription | None = None
    inflight: set[asyncio.Task[None]] = set()
    # When the last pull request opened on ``sub`` expires (fetch's timeout is its expiry).
    requests_end = 0.0
    try:
        while not stop.is_set():
            free = concurrency - len(inflight)
            if free <= 0:
                await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                if sub is None:
                    sub = await js.pull_subscribe_bind(durable=spec.durable, stream=STREAM)
                if inflight:
                    requests_end = time.monotonic() + 0.02
                    msgs = await sub.fetch(free, timeout=0.02)
                else:
                    requests_end = time.monotonic() + 1.0
                    msgs = await sub.fetch(1, timeout=1.0)
            except (nats.errors.TimeoutError, TimeoutError):
                continue  # an empty fetch ends in a timeout: nothing to do, not an error
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
                break
            except Exception as exc:
                # NATS unreachable or the consumer missing after a server reset: back off and re-bind.
                log.warning(
                    "consumer.fetch_failed", consumer=spec.durable, error=type(exc).__name__, detail=str(exc)
                )
                if sub is not None:
                    with contextlib.suppress(Exception):
                        await sub.unsubscribe()
                    sub = None
                if isinstance(exc, nats.js.errors.NotFoundError):
                    with contextlib.suppress(Exception):
                        await ensure_stream(js, consumers=[spec])
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                continue
            for m in msgs:
                task = asyncio.create_task(_handle_one(spec, handler, m, store))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
    finally:
        # Graceful stop: finish (commit, then ack) what is in flight before letting go of the consumer.
        if inflight:
            await asyncio.wait(inflight, timeout=30)
        if sub is not None:
            # Messages the server delivered after the last fetch gave up wait in the subscription's
            # queue. They are ours (delivered, ack pending): handle them like the rest, commit then
            # ack, rather than hand them back. A nak'd message stays ack-pending on the server until
            # another worker fetches it, and a message dropped with the subscription until the ack wait.
            late = [
                asyncio.create_task(_handle_one(spec, handler, m, store))
                for m in await _late_deliveries(sub, requests_end)
            ]
            if late:
                log.info("consumer.handled_on_stop", consumer=spec.durable, count=len(late))
                await asyncio.wait(late, timeout=30)
            # A live pull subscription makes nc.drain() hang for its whole timeout.
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if store is not None and dead_letters is None:
            await store.close()
