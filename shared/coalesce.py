"""Questions asked at the same moment answered by one statement over all their keys (no wait when idle)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Mapping
from typing import Generic, TypeVar

__all__ = ["Coalesced"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalesced(Generic[K, V]):
    """``await ask(key)`` answered by ``answer_many(keys)``, called once for every key asked meanwhile.

    The first question starts a call at once (nothing waits when idle); questions arriving while it
    runs go together in the next call, each key once. Every answer therefore comes from a call that
    began after the question was asked, as when asked alone: what the database said at that moment
    (a revoked key, a disabled endpoint) is never answered from an earlier call. A key missing from the
    call's answer gets ``default``. A call that fails fails the questions in it, not those of the next.

    Hand-written: shared.groupcommit shares one transaction between works which each run their own
    statements, and aiodataloader (the DataLoader pattern) batches only the keys asked within one
    event-loop tick and caches answers. Requests reach a server on different ticks, so that would
    batch next to nothing, and a cached answer could outlive a revoked key; here questions wait for the
    call in flight, which is what gathers them under load, and nothing is kept after it is answered.
    """

    def __init__(self, answer_many: Callable[[list[K]], Awaitable[Mapping[K, V]]], default: V) -> None:
        self._answer_many = answer_many
        self._default = default
        self._waiting: dict[K, list[asyncio.Future[V]]] = {}
        self._running: asyncio.Task[None] | None = None
        self.calls = 0

    async def __call__(self, key: K) -> V:
        answer: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(answer)
        if self._running is None:
            self._running = asyncio.create_task(self._ask())
        return await answer

    async def _ask(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                self.calls += 1
                try:
                    answers = await self._answer_many(list(batch))
                except Exception as exc:
                    _settle(batch, exc)
                    continue
                except BaseException:
                    _settle(batch, asyncio.CancelledError())
                    raise
                for key, futures in batch.items():
                    value = answers.get(key, self._default)
                    for future in futures:
                        if not future.done():  # the asker may have given up (cancelled)
                            future.set_result(value)
        finally:
            # Cancelled (shutdown): nobody may wait for an answer that will never come.
            _settle(self._waiting, asyncio.CancelledError())
            self._waiting = {}
            self._running = None


def _settle(batch: Mapping[K, list[asyncio.Future[V]]], error: BaseException) -> None:
    for futures in batch.values():
        for future in futures:
            if not future.done():
                future.set_exception(error)
