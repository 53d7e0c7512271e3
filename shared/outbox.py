"""Transactional outbox: events are written with the state change and relayed to JetStream."""

from __future__ import annotations

import asyncio
import contextlib
import time

import asyncpg
import structlog
from nats.js import JetStreamContext

from shared.db import SERVICE_APPLICATION, SYSTEM, mark_outbox_written, on_outbox_commit, transaction
from shared.events import Event, encode_event, subject_for

__all__ = ["OutboxRelay", "enqueue"]

log = structlog.get_logger("refnet.outbox")

_CHANNEL = "refnet_outbox"


async def enqueue(conn: asyncpg.Connection, *events: Event) -> None:
    """Write events into the outbox within the caller's open transaction."""
    if not events:
        return
    await conn.executemany(
        "INSERT INTO outbox (event_id, subject, payload) VALUES ($1, $2, $3)",
        [(e.event_id, subject_for(e), encode_event(e)) for e in events],
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
    ) -> None:
        self._pool = pool
        self._js = js
        self._dsn = dsn
        self._poll = poll_interval
        self._batch = batch
        self._wake = asyncio.Event()
        self.published = 0
        self.last_error: str | None = None

    async def run(self, stop: asyncio.Event) -> None:
        listener = asyncio.create_task(self._listen(stop), name="outbox-listen")
        # This process's own commits wake the relay directly (shared.db.transaction calls the hook).
        unregister = on_outbox_commit(self._wake.set)
        try:
            while not stop.is_set():
                try:
                    sent = await self.relay_once()
                except Exception as exc:
                    self.last_error = type(exc).__name__
                    log.warning("outbox.relay_failed", error=type(exc).__name__, detail=str(exc)[:200])
                    sent = 0
                    await self._sleep(stop, min(5.0, self._poll * 2))
                    continue
                if sent >= self._batch:
                    continue  # more waiting: keep draining without sleeping
                await self._sleep(stop, self._poll)
        finally:
            unregister()
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await listener

    def _on_notify(self, _conn: object, _pid: int, _channel: str, writer: object) -> None:
        # A service's rows are published by that service's relay, woken in-process when it committed;
        # waking here too would only race it to an empty claim. Anyone else (CLI, operator, an older
        # trigger without a payload) wakes us. A service that dies before relaying is covered by the poll.
        if writer != SERVICE_APPLICATION:
            self._wake.set()

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> None:
        self._wake.clear()
        waiters = [asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()

    async def relay_once(self) -> int:
        """Publish one batch; return how many rows were published and removed."""
        async with transaction(self._pool, SYSTEM) as conn:
            rows = await conn.fetch(
                "SELECT id, event_id, subject, payload FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._batch,
            )
            if not rows:
                return 0
            started = time.monotonic()
            # Publish concurrently (pipelined on one connection); all must be acknowledged by the
            # stream before the rows go, otherwise the transaction rolls back and they are retried.
            acks = await asyncio.gather(
                *(
                    self._js.publish(
                        r["subject"],
                        bytes(r["payload"]),
                        headers={"Nats-Msg-Id": str(r["event_id"])},
                        timeout=5,
                    )
                    for r in rows
                ),
                return_exceptions=True,
            )
            done = [r["id"] for r, ack in zip(rows, acks, strict=True) if not isinstance(ack, BaseException)]
            failed = len(rows) - len(done)
            if done:
                await conn.execute("DELETE FROM outbox WHERE id = any($1::bigint[])", done)
            if failed:
                first = next(a for a in acks if isinstance(a, BaseException))
                await conn.execute(
                    "UPDATE outbox SET attempts = attempts + 1 WHERE id = any($1::bigint[])",
                    [r["id"] for r, a in zip(rows, acks, strict=True) if isinstance(a, BaseException)],
                )
                self.last_error = type(first).__name__
                log.warning("outbox.publish_failed", failed=failed, error=type(first).__name__)
            self.published += len(done)
            log.debug("outbox.relayed", count=len(done), ms=round((time.monotonic() - started) * 1000, 2))
            if failed and not done:
                raise ConnectionError(f"could not publish {failed} outbox events")
            return len(done)

    async def _listen(self, stop: asyncio.Event) -> None:
        # LISTEN needs its own connection: pool release runs UNLISTEN *.
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                await conn.add_listener(_CHANNEL, self._on_notify)
                self._wake.set()  # catch up on anything written while we were not listening
                while not stop.is_set() and not conn.is_closed():
                    await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("outbox.listen_failed", error=type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
