"""One LISTEN connection per intake process, fanning notification wake-ups out to its live streams."""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from typing import Any

import asyncpg
import structlog

__all__ = ["NotificationHub"]

log = structlog.get_logger("refnet.intake")


class NotificationHub:
    """One LISTEN connection per intake process fans wake-ups out to that process's SSE streams."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()

    def subscribe(self, recipient_id: str) -> asyncio.Event:
        ev = asyncio.Event()
        self._waiters[recipient_id].add(ev)
        return ev

    def unsubscribe(self, recipient_id: str, ev: asyncio.Event) -> None:
        waiters = self._waiters.get(recipient_id)
        if waiters is not None:
            waiters.discard(ev)
            if not waiters:
                del self._waiters[recipient_id]

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        for ev in self._waiters.get(str(payload), ()):
            ev.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for ev in waiters:
                ev.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notification-hub")

    async def stop(self) -> None:
        self._stop.set()
        self._wake_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def _run(self) -> None:
        while not self._stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self._dsn)
                await conn.add_listener("refnet_notifications", self._on_notify)
                # Anything committed while we were not listening: let every stream re-query.
                self._wake_all()
                while not self._stop.is_set() and not conn.is_closed():
                    await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("hub.listen_failed", error=type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
