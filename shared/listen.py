"""One LISTEN helper: a dedicated connection that listens on PostgreSQL channels and reconnects after loss.

    listener = Listener(dsn, {"refnet_outbox": on_outbox}, on_connect=wake, name="outbox")
    await listener.run(stop)            # in a task of its own, until `stop` is set (or cancelled)

    async with Listener(dsn, {...}):    # or: in the background for the duration of a block
        ...

Callbacks take the notification's payload (a string) and run on the event loop: keep them short and
non-blocking (set an event, look up a waiter). ``on_connect`` runs after every (re)connection, once
the channels are listened to: notifications sent while the connection was down are lost, so it is
the moment to catch up (wake whoever would have been woken).

LISTEN needs its own connection, outside any pool: a pooled connection's release would UNLISTEN.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from types import TracebackType

import asyncpg
import structlog

from shared.db import load_sql

__all__ = ["Callback", "Listener"]

log = structlog.get_logger("refnet.listen")

Callback = Callable[[str], None]


class Listener:
    """Listens on ``channels`` (name → callback) over one connection to ``dsn``, for as long as it runs.

    A lost connection (server restart, network) is noticed at once by asyncpg's termination callback,
    or within ``check_s`` by a ping for a silently dead one; the listener then reconnects every
    ``retry_s`` until it can. ``connected`` says whether it is listening now.
    """

    def __init__(
        self,
        dsn: str,
        channels: Mapping[str, Callback],
        *,
        on_connect: Callable[[], None] | None = None,
        name: str = "listen",
        retry_s: float = 1.0,
        check_s: float = 15.0,
    ) -> None:
        if not channels:
            raise ValueError("a Listener needs at least one channel")
        self._dsn = dsn
        self._channels = dict(channels)
        self._on_connect = on_connect
        self._name = name
        self._retry_s = retry_s
        self._check_s = check_s
        self._connected = False
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Listen until ``stop`` is set (or the task is cancelled), reconnecting whenever it must."""
        stop = stop or self._stop
        failing = False
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._dsn)
                conn.add_termination_listener(_setter(lost))
                for channel, callback in self._channels.items():
                    await conn.add_listener(channel, _adapt(callback))
                self._connected = True
                if failing:
                    log.info("listen.reconnected", listener=self._name)
                failing = False
                if self._on_connect is not None:
                    self._on_connect()
                await self._watch(conn, lost, stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("listen.lost", listener=self._name, error=type(exc).__name__)
                failing = True
            finally:
                self._connected = False
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._retry_s)

    async def _watch(self, conn: asyncpg.Connection, lost: asyncio.Event, stop: asyncio.Event) -> None:
        """Return when stopping; raise when the connection is gone (closed, or not answering a ping)."""
        while True:
            waiters = [asyncio.ensure_future(lost.wait()), asyncio.ensure_future(stop.wait())]
            try:
                await asyncio.wait(waiters, timeout=self._check_s, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
            if stop.is_set():
                return
            if lost.is_set() or conn.is_closed():
                raise ConnectionError("listening connection closed")
            await conn.execute(load_sql("shared", "ping"), timeout=5)

    async def __aenter__(self) -> Listener:
        self._stop.clear()
        self._task = asyncio.create_task(self.run(self._stop), name=f"listen-{self._name}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    return lambda _conn: event.set()


def _adapt(callback: Callback) -> Callable[[object, int, str, object], None]:
    # asyncpg calls (connection, pid, channel, payload); the payload is all a listener needs.
    def on_notify(_conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            callback(str(payload))
        except Exception as exc:  # a callback's bug must not end the listening
            log.error("listen.callback_failed", error=type(exc).__name__)

    return on_notify
