"""shared.coalesce: questions of one moment share a call, each answer from a call begun after it was asked."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from shared.coalesce import Coalesced


class _Answers:
    """answer_many that records each call's keys and waits for `gate` before answering."""

    def __init__(self, fail_on: str = "") -> None:
        self.calls: list[list[str]] = []
        self.gate = asyncio.Event()
        self.fail_on = fail_on

    async def __call__(self, keys: list[str]) -> Mapping[str, int]:
        self.calls.append(keys)
        await self.gate.wait()
        if self.fail_on in keys:
            raise RuntimeError("the database went away")
        return {k: len(k) for k in keys if not k.startswith("x")}


async def test_alone_at_once_then_the_rest_together_each_key_once() -> None:
    answers = _Answers()
    ask: Coalesced[str, int | None] = Coalesced(answers, default=None)
    first = asyncio.create_task(ask("a"))
    await asyncio.sleep(0.01)
    assert answers.calls == [["a"]]  # idle: asked at once, nothing waits for company
    later = asyncio.gather(ask("bb"), ask("ccc"), ask("bb"), ask("xx"))
    await asyncio.sleep(0.01)
    assert answers.calls == [["a"]]  # the rest wait for the call in flight
    answers.gate.set()
    assert await first == 1
    assert list(await later) == [2, 3, 2, None]  # a key without an answer gets the default
    assert answers.calls == [["a"], ["bb", "ccc", "xx"]]
    assert ask.calls == 2


async def test_a_failed_call_fails_its_questions_only() -> None:
    answers = _Answers(fail_on="boom")
    ask: Coalesced[str, int | None] = Coalesced(answers, default=None)
    doomed = asyncio.gather(ask("boom"), ask("a"), return_exceptions=True)
    await asyncio.sleep(0.01)
    after = asyncio.create_task(ask("bb"))  # asked while the failing call runs: the next call's
    await asyncio.sleep(0.01)
    answers.gate.set()
    assert [type(r) for r in await doomed] == [RuntimeError, RuntimeError]
    assert await after == 2


async def test_an_asker_that_gives_up_does_not_stop_the_others() -> None:
    answers = _Answers()
    ask: Coalesced[str, int | None] = Coalesced(answers, default=None)
    impatient, patient = asyncio.create_task(ask("a")), asyncio.create_task(ask("a"))
    await asyncio.sleep(0.01)
    impatient.cancel()
    answers.gate.set()
    assert await patient == 1
    with pytest.raises(asyncio.CancelledError):
        await impatient


async def test_a_cancelled_call_leaves_nobody_waiting() -> None:
    answers = _Answers()
    ask: Coalesced[str, int | None] = Coalesced(answers, default=None)
    inflight = asyncio.create_task(ask("a"))
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(ask("bb"))
    await asyncio.sleep(0.01)
    running = ask._running
    assert running is not None
    running.cancel()  # the process is stopping
    for question in (inflight, queued):
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(question, 1)
    # And the next question starts a call of its own.
    answers.gate.set()
    assert await asyncio.wait_for(ask("ccc"), 1) == 3
