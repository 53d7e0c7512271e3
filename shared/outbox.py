"""Transactional outbox: events are written with the state change and relayed to JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

import asyncpg
import structlog
from nats.js import JetStreamContext
from nats.js.api import PubAck

from shared.db import (
    SERVICE_APPLICATION,
    SYSTEM,
    load_sql,
    mark_outbox_written,
    on_outbox_commit,
    transaction,
)
from shared.events import Event, encode_event, subject_for
from shared.listen import Listener

__all__ = ["OutboxRelay", "enqueue"]

log = structlog.get_logger("refnet.outbox")

_CHANNEL = "refnet_outbox"
# A claim reads the outbox in id order from a floor a little below the lowest id the relay's last
# claim took, not from the start: every relayed row leaves a dead index entry until autovacuum comes
# (at most once a minute by default), and a claim from the start stepped over all of them (at 400
# referrals/s for 40 s the claims cost 0.3 ms of PostgreSQL time per referral, 0.1 with the floor).
# The margin covers rows committed late by transactions that took their ids earlier (a few hundred
# ids per batch); one that is later still waits for the next claim from the start, which every relay
# makes at least once per _FULL_CLAIM_EVERY_S: nothing is skipped for longer than that.
_FLOOR_MARGIN = 2_000
_FULL_CLAIM_EVERY_S = 1.0


async def enqueue(conn: asyncpg.Connection, *events: Event) -> None:
    """Write events into the outbox within the caller's open transaction."""
    if not events:
        return
    await conn.execute(
        load_sql("shared", "outbox_insert"),
        [e.event_id for e in events],
        [subject_for(e) for e in events],
        [encode_event(e) for e in events],
    )
    mark_outbox_written()


class OutboxRelay:
    """Publishes outbox rows with ``Nats-Msg-Id`` = event id, then deletes them.

    Several relays (one per service process) may run at once: rows are claimed with SKIP LOCKED,
    and a row published twice (crash between publish and delete) is dropped by the stream's
    duplicate window.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        dsn: str,
        *,
        poll_interval: float = 1.0,
        batch: int = 200,
        subjects: Sequence[str] | None = None,
    ) -> None:
        self._pool = pool
        self._js = js
        self._dsn = dsn
        self._poll = poll_interval
        self._batch = batch
        # None: every subject (a relay with unrestricted NATS credentials).
        self._subjects = list(subjects) if subjects is not None else None
        self._wake = asyncio.Event()
        self._floor = 0
        self._full_claim_at = 0.0
        self.published = 0
        self.last_error: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        # Rows written elsewhere (CLI, operator, migration) wake the relay through the outbox trigger's
        # NOTIFY; after a reconnection it catches up on whatever was written meanwhile.
        listener = asyncio.create_task(
            Listener(self._dsn, {_CHANNEL: self._on_notify}, on_connect=self._wake.set, name="outbox").run(
                stop
            ),
            name="outbox-listen",
        )
        # This process's own commits wake the relay directly (shared.db.transaction calls the hook).
        unregister = on_outbox_commit(self._wake.set)
        try:
            while not stop.is_set():
                # Cleared before the claim, not after: a commit that lands while a batch is being
                # published must find the next sleep already woken, or its row waits for the poll.
                self._wake.clear()
                try:
                    sent = await self.relay_once()
                except Exception as exc:
                    self.last_error = type(exc).__name__
                    log.warning("outbox.relay_failed", error=type(exc).__name__, detail=str(exc)[:200])
                    # A real back-off, deaf to wake-ups: commits keep arriving while NATS is away, and
                    # retrying at their pace would only hammer it. The next claim takes every row anyway.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), min(5.0, self._poll * 2))
                    continue
                if sent >= self._batch:
                    continue  # more waiting: keep draining without sleeping
                await self._sleep(stop, self._poll)
        finally:
            unregister()
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener

    def _on_notify(self, writer: str) -> None:
        # A service's rows are published by that service's relay, woken in-process when it committed;
        # waking here too would only race it to an empty claim. Anyone else (CLI, operator, an older
        # trigger without a payload) wakes us. A service that dies before relaying is covered by the poll.
        if writer != SERVICE_APPLICATION:
            self._wake.set()

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        waiters = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows were published and removed."""
        now = time.monotonic()
        floor = self._floor
        if now - self._full_claim_at >= _FULL_CLAIM_EVERY_S:
            floor, self._full_claim_at = 0, now
        async with transaction(self._pool, SYSTEM) as conn:
            # Claim and delete in one statement: the rows stay locked by this transaction, and only
            # its commit (after every publish was acknowledged) makes the deletion real. A crash or an
            # exception before then rolls it back and the rows are there for the next relay.
            rows = sorted(
                await conn.fetch(load_sql("shared", "outbox_claim"), self._batch, self._subjects, floor),
                key=lambda r: r["id"],
            )
            if not rows:
                return 0
            self._floor = max(0, rows[0]["id"] - _FLOOR_MARGIN)
            started = time.monotonic()
            # Publish pipelined on one connection; all must be acknowledged by the stream before the
            # rows go, otherwise they are put back (or the transaction rolls back).
            acks = await _publish_all(self._js, rows)
            failed = [r for r, ack in zip(rows, acks, strict=True) if isinstance(ack, BaseException)]
            done = len(rows) - len(failed)
            if failed:
                first = next(a for a in acks if isinstance(a, BaseException))
                self.last_error = type(first).__name__
                log.warning("outbox.publish_failed", failed=len(failed), error=type(first).__name__)
                if not done:
                    raise ConnectionError(f"could not publish {len(failed)} outbox events")
                # Some went out: keep those deleted, put the rest back as they were (same id, so
                # the order holds), counting the attempt.
                await conn.execute(
                    load_sql("shared", "outbox_put_back"),
                    [r["id"] for r in failed],
                    [r["event_id"] for r in failed],
                    [r["subject"] for r in failed],
                    [r["payload"] for r in failed],
                    [r["created_at"] for r in failed],
                    [r["attempts"] + 1 for r in failed],
                )
            self.published += done
            log.debug("outbox.relayed", count=done, ms=round((time.monotonic() - started) * 1000, 2))
            return done


# How long a batch's publishes may wait for the stream's acknowledgements before the unacknowledged
# ones count as failed.
_PUBLISH_TIMEOUT_S = 5.0


async def _publish_all(js: JetStreamContext, rows: Sequence[asyncpg.Record]) -> list[PubAck | BaseException]:
    """Publish the rows' events at once; each row's PubAck or exception, in order.

    publish_async sends each message and returns a future that its acknowledgement settles (one reply
    subscription for them all), where publish() is a request with its own timer and wait per event.
    One deadline covers the batch."""
    futures: list[asyncio.Future[PubAck]] = []
    failure: BaseException | None = None
    for r in rows:
        try:
            futures.append(
                await js.publish_async(
                    r["subject"],
                    bytes(r["payload"]),
                    # No wait_stall: with one, every call waits for the client's semaphore in a task
                    # of its own and yields, so each message went out in a write of its own (seen: the
                    # consumers then fetched one message at a time, 1.7x the CPU per referral). The
                    # batch (200 by default) is far below the client's 4,000 pending publishes: no wait.
                    headers={"Nats-Msg-Id": str(r["event_id"])},
                )
            )
        except Exception as exc:  # not sent (disconnected, too many pending): nor are the rest
            failure = exc
            break
    if futures:
        _, pending = await asyncio.wait(futures, timeout=_PUBLISH_TIMEOUT_S)
        for f in pending:
            f.cancel()  # forgets it in the client too (its done callback)
    acks: list[PubAck | BaseException] = []
    for f in futures:
        if f.cancelled():
            acks.append(TimeoutError("no acknowledgement from the stream"))
        else:
            error = f.exception()
            acks.append(error if error is not None else f.result())
    if failure is not None:
        acks.extend(failure for _ in range(len(rows) - len(futures)))
    return acks
