"""The one LISTEN helper on a real PostgreSQL: payloads reach callbacks, a lost connection is noticed
and replaced (with a catch-up call), a failing callback does not end the listening."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import asyncpg

from shared.listen import Listener


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def _notify(dsn: str, channel: str, payload: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_notify($1, $2)", channel, payload)
    finally:
        await conn.close()


async def _kill_other_connections(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.close()


async def test_payloads_reach_their_callbacks_and_a_lost_connection_is_replaced(db_dsn: str) -> None:
    got: list[tuple[str, str]] = []
    connects = 0

    def on_connect() -> None:
        nonlocal connects
        connects += 1

    def broken(_payload: str) -> None:
        raise RuntimeError("a callback's bug")

    listener = Listener(
        db_dsn,
        {
            "chan_a": lambda p: got.append(("a", p)),
            "chan_b": lambda p: got.append(("b", p)),
            "chan_broken": broken,
        },
        on_connect=on_connect,
        name="test",
        retry_s=0.1,
    )
    async with listener:
        await _until(lambda: listener.connected)
        assert connects == 1
        await _notify(db_dsn, "chan_broken", "boom")
        await _notify(db_dsn, "chan_a", "one")
        await _notify(db_dsn, "chan_b", "two")
        await _notify(db_dsn, "chan_elsewhere", "three")
        await _until(lambda: len(got) >= 2)
        assert got == [("a", "one"), ("b", "two")]

        # The server drops the listening connection: a new one is made and the owner told to catch up.
        assert await _kill_other_connections(db_dsn) >= 1
        await _until(lambda: connects >= 2 and listener.connected)
        await _notify(db_dsn, "chan_a", "after")
        await _until(lambda: len(got) >= 3)
        assert got[-1] == ("a", "after")
    assert not listener.connected


async def test_run_returns_when_stopped_and_retries_while_the_server_is_unreachable(db_dsn: str) -> None:
    stop = asyncio.Event()
    listener = Listener("postgresql://nobody@127.0.0.1:1/none", {"x": lambda _p: None}, retry_s=0.05)
    task = asyncio.create_task(listener.run(stop))
    await asyncio.sleep(0.3)
    assert not task.done() and not listener.connected
    stop.set()
    await asyncio.wait_for(task, 5)
