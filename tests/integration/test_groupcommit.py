"""Group commit against PostgreSQL: concurrent works share transactions, each keeps its own identity,
answer and error, and nothing is answered before its commit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.db import Identity, create_pool, switch_identity
from shared.groupcommit import GroupCommit, ItemFailed, Work

pytestmark = pytest.mark.asyncio

_TABLE = "CREATE TABLE gc_probe (n integer PRIMARY KEY, partner text NOT NULL, xid bigint NOT NULL)"
_INSERT = (
    "INSERT INTO gc_probe (n, partner, xid) "
    "VALUES ($1, current_setting('app.partner_id'), txid_current()) RETURNING xid"
)


@pytest.fixture
async def pool(db_dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(db_dsn, max_size=4)
    async with pool.acquire() as conn:
        await conn.execute(_TABLE)
    yield pool
    await pool.close()


def _insert(n: int) -> Work[int]:
    """A work that inserts probe row `n` as its caller; its transaction's id."""

    async def work(conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval(_INSERT, n))

    return work


def _partner(n: int) -> Identity:
    return Identity(role="partner", partner_id=f"p{n % 3}")


async def test_concurrent_works_share_transactions_and_keep_their_identity(pool: asyncpg.Pool) -> None:
    group = GroupCommit(pool, max_batch=16, max_inflight=2)

    xids = await asyncio.gather(*(group.run(_insert(n), _partner(n)) for n in range(100)))
    assert group.works == 100
    # Fewer transactions than works: they were batched (a lone caller would get its own).
    assert len(set(xids)) == group.batches < 100
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT n, partner, xid FROM gc_probe ORDER BY n")
    assert [r["n"] for r in rows] == list(range(100))
    # Each work ran as its own caller even inside a shared transaction.
    assert all(r["partner"] == f"p{r['n'] % 3}" for r in rows)
    assert [r["xid"] for r in rows] == xids
    # A batch's works of one caller run side by side: one identity switch per caller and batch.
    assert group.identity_switches <= 3 * group.batches < 100 * 2 // 3


async def test_one_failing_work_fails_alone_and_its_neighbours_commit(pool: asyncpg.Pool) -> None:
    group = GroupCommit(pool, max_batch=64, max_inflight=1)

    def work_for(n: int):  # type: ignore[no-untyped-def]
        async def work(conn: asyncpg.Connection) -> int:
            await conn.execute(_INSERT, n)
            if n % 10 == 7:
                # A work that wrote, then failed: its write must vanish with it.
                await conn.execute("INSERT INTO gc_probe (n, partner, xid) VALUES ($1, 'x', 0)", n)
            return n

        return work

    outcomes = await asyncio.gather(*(group.run(work_for(n)) for n in range(50)), return_exceptions=True)
    failed = [n for n, o in enumerate(outcomes) if isinstance(o, BaseException)]
    assert failed == [n for n in range(50) if n % 10 == 7]
    assert all(isinstance(outcomes[n], asyncpg.UniqueViolationError) for n in failed)
    assert [o for o in outcomes if not isinstance(o, BaseException)] == [n for n in range(50) if n % 10 != 7]
    async with pool.acquire() as conn:
        stored = [r["n"] for r in await conn.fetch("SELECT n FROM gc_probe ORDER BY n")]
    assert stored == [n for n in range(50) if n % 10 != 7]


async def test_answers_come_only_after_the_commit(pool: asyncpg.Pool, db_dsn: str) -> None:
    group = GroupCommit(pool, max_batch=8, max_inflight=1)
    observer = await asyncpg.connect(db_dsn)
    looking = asyncio.Lock()  # one connection: one query at a time
    try:

        def work_for(n: int):  # type: ignore[no-untyped-def]
            async def work(conn: asyncpg.Connection) -> int:
                await conn.execute(_INSERT, n)
                return n

            return work

        async def run_and_look(n: int) -> int:
            await group.run(work_for(n))
            # Answered: the row is visible from another connection, so it has committed.
            async with looking:
                return int(await observer.fetchval("SELECT count(*) FROM gc_probe WHERE n = $1", n))

        seen = []
        for n in range(0, 40, 8):
            seen += await asyncio.gather(*(run_and_look(n + i) for i in range(8)))
        assert seen == [1] * 40
    finally:
        await observer.close()


async def test_serialized_groups_never_run_at_once(pool: asyncpg.Pool) -> None:
    # Two processes' routing groups stand in as two groups on one pool, each with batches in flight.
    groups = [GroupCommit(pool, serialize="gc-probe", max_batch=4, max_inflight=2) for _ in range(2)]
    running = peak = 0

    async def work(conn: asyncpg.Connection) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await conn.execute("SELECT pg_sleep(0.02)")
        running -= 1

    await asyncio.gather(*(groups[n % 2].run(work) for n in range(24)))
    assert sum(g.works for g in groups) == 24
    # One shared transaction at a time across both groups: never two works at once.
    assert peak == 1


async def test_a_together_function_does_a_batch_at_once_and_gives_up_on_one(pool: asyncpg.Pool) -> None:
    """Set-based batches (routing's): one call over the payloads; ItemFailed sends that one to its own
    work, alone, and the rest to a later batch; a lone caller runs its work."""
    calls: list[list[int]] = []

    async def together(conn: asyncpg.Connection, payloads: list[int]) -> list[int]:
        calls.append(payloads)
        for index, n in enumerate(payloads):
            if n % 10 == 7:
                raise ItemFailed(index)
        await conn.execute(
            "INSERT INTO gc_probe (n, partner, xid) SELECT n, 'together', txid_current() FROM unnest($1::int[]) n",
            payloads,
        )
        return [-n for n in payloads]

    group = GroupCommit(pool, together=together, max_batch=16, max_inflight=1)

    def work_for(n: int):  # type: ignore[no-untyped-def]
        async def work(conn: asyncpg.Connection) -> int:
            await conn.execute(_INSERT, n)
            return n

        return work

    outcomes = await asyncio.gather(*(group.run(work_for(n), payload=n) for n in range(40)))
    # The works given up on ran alone (their answers are their own works'); the others together.
    assert outcomes == [n if n % 10 == 7 else -n for n in range(40)]
    assert calls and all(len(c) > 1 for c in calls)
    async with pool.acquire() as conn:
        rows = await conn.fetch("SELECT n, partner FROM gc_probe ORDER BY n")
    assert [r["n"] for r in rows] == list(range(40))
    assert {r["n"] for r in rows if r["partner"] == "together"} == {n for n in range(40) if n % 10 != 7}


async def test_a_batch_begins_as_its_first_caller(pool: asyncpg.Pool) -> None:
    # The transaction begins as the batch's smallest identity: a batch of one caller switches nothing,
    # and a together function's switch to that identity is skipped (shared.db.switch_identity).
    group = GroupCommit(pool, max_batch=16, max_inflight=1)

    await asyncio.gather(*(group.run(_insert(n), _partner(0)) for n in range(30)))
    assert group.batches < 30 and group.identity_switches == 0
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM gc_probe WHERE partner = 'p0'") == 30

    switched: list[tuple[str, bool, str]] = []

    async def together(conn: asyncpg.Connection, payloads: list[Identity]) -> list[None]:
        for identity in sorted(set(payloads)):
            did = await switch_identity(conn, identity)
            switched.append(
                (identity.partner_id, did, await conn.fetchval("SELECT current_setting('app.partner_id')"))
            )
        return [None] * len(payloads)

    both = GroupCommit(pool, together=together, max_batch=16, max_inflight=1)

    async def noop(conn: asyncpg.Connection) -> None:
        return None

    await asyncio.gather(
        *(both.run(noop, _partner(n), payload=_partner(n)) for n in range(1, 3) for _ in range(5))
    )
    # Each batch: no switch for the first caller (already in force), one for the second; each
    # statement after a switch ran as the caller switched to.
    assert switched and all(partner == setting for partner, _, setting in switched)
    firsts = [did for partner, did, _ in switched if partner == "p1"]
    assert firsts and not any(firsts)
    assert all(did for partner, did, _ in switched if partner == "p2")


@pytest.mark.parametrize("inflight", [1, 2])
async def test_a_caller_submitting_again_right_after_its_answer_is_run(
    pool: asyncpg.Pool, inflight: int
) -> None:
    # The answer wakes the caller before the finished leader's done callback runs: a group whose
    # leader slots were all still counted as taken then queued the next work with nobody to run it.
    group = GroupCommit(pool, max_inflight=inflight)
    partner = Identity(role="partner", partner_id="p")
    # asyncio.timeout, not wait_for: the call must run in the caller's own task, as a handler's does.
    async with asyncio.timeout(10):
        for n in range(5):
            await group.run(_insert(n), partner)
    # Several callers at once, each submitting again as soon as it is answered.

    async def caller(base: int) -> None:
        async with asyncio.timeout(10):
            for n in range(base, base + 5):
                await group.run(_insert(n), partner)

    await asyncio.gather(*(caller(100 * k) for k in range(1, 4)))
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM gc_probe") == 20
