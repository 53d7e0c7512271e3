"""Group commit: concurrent units of database work share one transaction and one commit."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

from shared.db import (
    SYSTEM,
    Identity,
    enter_batch_item,
    load_sql,
    mark_local_setup,
    mark_outbox_written,
    outbox_written_in,
    switch_identity,
    transaction,
    without_comments,
)

__all__ = ["GroupCommit", "ItemFailed", "Together", "Work"]

T = TypeVar("T")
Work = Callable[[asyncpg.Connection], Coroutine[Any, Any, T]]
# A whole batch's works done together (set-based): the callers' payloads in, their results out, in order.
Together = Callable[[asyncpg.Connection, list[Any]], Coroutine[Any, Any, list[Any]]]


@dataclass
class _Item:
    identity: Identity
    work: Work[Any]
    future: asyncio.Future[Any]
    payload: Any = None
    # The caller's context (log bindings, trace id): the work runs in a copy of it.
    context: contextvars.Context = field(default_factory=contextvars.copy_context)


class ItemFailed(Exception):
    """Raised by a `Together` function: the batch is rolled back, the work at `index` runs alone (its
    own `work`) and its neighbours go back to the head of the queue."""

    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


class GroupCommit:
    """Runs each caller's `work(conn)` inside a transaction shared with whatever else is waiting.

    Adaptive, so idle costs nothing: a batch is cut from the queue the moment a leader is free (at most
    `max_inflight` batches at once), so a lone caller runs at once in a transaction of its own, and
    under load callers that arrive while batches commit wait for the next one, up to `max_batch`.

    Semantics stay those of one transaction per caller, run one after the other:
    - each work runs with its caller's identity (the `app.*` settings are switched between works);
    - the caller gets its answer only after the commit (effects durable: ack or respond after that);
    - if a work raises, the whole batch is rolled back, the failing work is run again alone in its own
      transaction (its outcome, success or error, goes to its caller alone) and its neighbours go back
      to the head of the queue: one bad request never fails its neighbours;
    - a failure of BEGIN or COMMIT itself (the database went away) goes to every caller of the batch,
      as it would have to each of their own transactions.
    A work may therefore run more than once before it commits: it must keep to the database (its
    Python side effects, such as metrics, can repeat) and must not catch database errors.

    With `together`, a batch of two or more is one call over the callers' payloads (set-based work,
    such as routing's); it answers each caller in order, or raises ItemFailed(index) to have that one
    run alone (its `work`) and the others again, as above. Its transaction begins as the batch's
    smallest identity (Identity is ordered); it switches with shared.db.switch_identity, which skips a
    switch to the identity already in force.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        setup: str = "",
        serialize: str = "",
        together: Together | None = None,
        max_batch: int = 64,
        max_inflight: int = 2,
    ) -> None:
        self._pool = pool
        self._setup = setup
        # `serialize` names a transaction-scoped advisory lock taken on BEGIN (the same round trip):
        # transactions of every process's group with that name then run one at a time, so works that
        # lock rows in an order only known while they run (routing's capacity guard) cannot deadlock
        # against another batch; the next batch's BEGIN already waits while one commits.
        lock = (
            without_comments(load_sql("shared", "group_lock")).format(name=_quote(serialize))
            if serialize
            else ""
        )
        self._begin = "; ".join(part for part in (setup, lock) if part)
        # `together`: batches of two or more run as one call over their payloads instead of work by
        # work (all as SYSTEM); a lone work, or one a batch gave up on (ItemFailed), runs its `work`.
        self._together_fn = together
        # ... in the context the group was made in (the process's log bindings), not in any one
        # caller's: a batch is nobody's event or request in particular.
        self._home = contextvars.copy_context()
        self._max_batch = max_batch
        self._max_inflight = max_inflight
        self._queue: list[_Item] = []
        self._leaders: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.works = 0
        self.identity_switches = 0

    async def run(self, work: Work[T], identity: Identity = SYSTEM, *, payload: Any = None) -> T:
        """Run `work` in a (shared) transaction as `identity`; its result once that has committed.
        `payload` is what a `together` function gets for this caller."""
        item = _Item(identity, work, asyncio.get_running_loop().create_future(), payload)
        self._queue.append(item)
        if len(self._leaders) < self._max_inflight:
            leader = asyncio.create_task(self._lead(), name="group-commit")
            self._leaders.add(leader)
            leader.add_done_callback(self._leaders.discard)
        result: T = await item.future
        return result

    async def _lead(self) -> None:
        try:
            while self._queue:
                batch = [i for i in self._queue[: self._max_batch] if not i.future.done()]
                del self._queue[: self._max_batch]
                if len(batch) == 1:
                    await self._alone(batch[0])
                elif batch:
                    await self._together(batch)
        finally:
            # Leave the leaders at once, with no await between the empty queue and this: the task's
            # done callback (which also discards it) runs a loop turn later, after the callers it
            # answered; one of them submitting again in between found every slot still taken and
            # waited for a leader that had already left (with one batch in flight: every time).
            current = asyncio.current_task()
            if current is not None:
                self._leaders.discard(current)

    async def _alone(self, item: _Item) -> None:
        """One work in its own transaction, in its caller's context."""

        async def body() -> Any:
            async with transaction(self._pool, item.identity, setup=self._begin) as conn:
                if self._setup:
                    mark_local_setup(self._setup)
                return await item.work(conn)

        task = asyncio.create_task(body(), context=item.context.copy())
        try:
            result = await task
        except asyncio.CancelledError:
            if not task.cancelled():  # the leader itself was cancelled
                item.future.cancel()
                raise
            item.future.cancel()
        except Exception as exc:
            _settle(item.future, exc=exc)
        else:
            _settle(item.future, result=result)
        self.batches += 1
        self.works += 1

    async def _together(self, batch: list[_Item]) -> None:
        results: list[Any] = []
        if self._together_fn is None:
            # Works of one caller side by side (stable: each caller's in arrival order): one identity
            # switch per caller in the batch, not one per work. Concurrent callers have no order among
            # them to keep.
            batch.sort(key=lambda item: item.identity)
        # The transaction begins as the batch's first caller (in the order a together function sorts
        # them too): one identity switch fewer per batch.
        first = min(item.identity for item in batch)
        try:
            async with transaction(self._pool, first, setup=self._begin) as conn:
                if self._together_fn is not None:
                    ctx = self._home.copy()
                    ctx.run(enter_batch_item, self._setup, first)
                    payloads = [item.payload for item in batch]
                    results = await asyncio.create_task(self._together_fn(conn, payloads), context=ctx)
                    if len(results) != len(batch):
                        raise RuntimeError("a together function must answer every work of its batch")
                    if ctx.run(outbox_written_in):
                        mark_outbox_written()
                for index, item in enumerate(batch if self._together_fn is None else []):
                    if await switch_identity(conn, item.identity):
                        self.identity_switches += 1
                    ctx = item.context.copy()
                    ctx.run(enter_batch_item, self._setup, item.identity)
                    try:
                        results.append(await asyncio.create_task(item.work(conn), context=ctx))
                    except Exception as exc:
                        raise ItemFailed(index) from exc
                    if ctx.run(outbox_written_in):
                        # The leader's transaction wakes this process's relays after the commit.
                        mark_outbox_written()
        except ItemFailed as failed:
            # Everything rolled back: the failing work alone, its neighbours first in line again.
            self._queue[:0] = batch[: failed.index] + batch[failed.index + 1 :]
            await self._alone(batch[failed.index])
            return
        except Exception as exc:
            for item in batch:
                _settle(item.future, exc=exc)
            return
        except asyncio.CancelledError:
            for item in batch:
                item.future.cancel()
            raise
        for item, result in zip(batch, results, strict=True):
            _settle(item.future, result=result)
        self.batches += 1
        self.works += len(batch)


def _quote(name: str) -> str:
    return "'" + name.replace("'", "''") + "'"


def _settle(future: asyncio.Future[Any], *, result: Any = None, exc: BaseException | None = None) -> None:
    if future.done():
        return  # the caller gave up waiting (cancelled); the effect stands, as a lost response would
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
