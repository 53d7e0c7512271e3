"""Retry decisions: the back-off schedule with jitter, Retry-After, outcomes per status, disabling."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.notify.retry import (
    MAX_RETRY_AFTER_S,
    AttemptResult,
    backoff,
    decide,
    parse_retry_after,
    parse_schedule,
    should_disable,
)
from shared.config import Settings

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
SCHEDULE = (5.0, 30.0, 300.0)


def _fail(status: int | None = 500, **kw: object) -> AttemptResult:
    return AttemptResult(ok=False, status=status, error=f"http_{status}", **kw)  # type: ignore[arg-type]


def test_default_schedule_first_retry_within_30s_and_spans_hours() -> None:
    schedule = parse_schedule(Settings().delivery_retry_schedule)
    jitter = Settings().delivery_retry_jitter
    assert schedule[0] * (1 + jitter) <= 30
    assert sum(schedule) >= 6 * 3600
    assert list(schedule) == sorted(schedule), "back-off grows"


@pytest.mark.parametrize("text", ["", " , ", "5,-1", "5,nan", "x"])
def test_bad_schedules_are_refused(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - float() and our own check word it differently
        parse_schedule(text)


def test_parse_schedule_tolerates_spaces() -> None:
    assert parse_schedule(" 0.5, 2 ,10") == (0.5, 2.0, 10.0)


@given(st.integers(0, 2), st.floats(0, 1), st.integers(0, 2**32))
def test_backoff_stays_within_its_jitter(index: int, jitter: float, seed: int) -> None:
    delay = backoff(index, SCHEDULE, jitter, random.Random(seed))
    assert delay is not None
    base = SCHEDULE[index]
    assert base * (1 - jitter) - 1e-9 <= delay <= base * (1 + jitter) + 1e-9


def test_backoff_without_jitter_is_the_schedule_and_ends() -> None:
    rng = random.Random(1)
    assert [backoff(i, SCHEDULE, 0, rng) for i in range(4)] == [5.0, 30.0, 300.0, None]


def test_jitter_spreads_retries() -> None:
    rng = random.Random(7)
    assert len({backoff(0, SCHEDULE, 0.2, rng) for _ in range(20)}) > 10


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("Fri, 20 Nov 2026 18:01:00 GMT", 60.0),
        ("Fri, 20 Nov 2026 17:00:00 GMT", 0.0),  # in the past: now
        ("99999999", MAX_RETRY_AFTER_S),
        ("-5", None),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_success_is_delivered() -> None:
    assert decide(AttemptResult(ok=True, status=204), 0, SCHEDULE, 0, random.Random()).outcome == "delivered"


@pytest.mark.parametrize("status", [400, 401, 404, 408, 500, 503, None])
def test_failures_retry_on_schedule_then_die(status: int | None) -> None:
    rng = random.Random()
    verdicts = [decide(_fail(status), i, SCHEDULE, 0, rng) for i in range(4)]
    assert [(v.outcome, v.delay) for v in verdicts] == [
        ("retry", 5.0),
        ("retry", 30.0),
        ("retry", 300.0),
        ("dead", None),
    ]


@pytest.mark.parametrize("status", [429, 502, 504])
def test_throttling_statuses_throttle(status: int) -> None:
    v = decide(_fail(status), 0, SCHEDULE, 0, random.Random())
    assert (v.outcome, v.delay) == ("throttled", 5.0)


def test_retry_after_is_honoured_but_never_shortens_the_schedule() -> None:
    rng = random.Random()
    assert decide(_fail(429, retry_after=120.0), 0, SCHEDULE, 0, rng).delay == 120.0
    assert decide(_fail(503, retry_after=1.0), 1, SCHEDULE, 0, rng).delay == 30.0


def test_retry_after_does_not_extend_a_spent_schedule() -> None:
    assert decide(_fail(429, retry_after=60.0), 3, SCHEDULE, 0, random.Random()).outcome == "dead"


def test_gone_and_permanent() -> None:
    rng = random.Random()
    assert decide(AttemptResult(ok=False, status=410, gone=True), 0, SCHEDULE, 0, rng).outcome == "gone"
    smtp_550 = AttemptResult(ok=False, status=550, permanent=True)
    assert decide(smtp_550, 0, SCHEDULE, 0, rng).outcome == "dead"


def test_should_disable_needs_both_count_and_duration() -> None:
    since = NOW - timedelta(days=6)
    day5 = 5 * 24 * 3600.0
    assert should_disable(20, since, NOW, 20, day5)
    assert not should_disable(19, since, NOW, 20, day5)
    assert not should_disable(50, NOW - timedelta(days=1), NOW, 20, day5)
    assert not should_disable(50, None, NOW, 20, day5)
