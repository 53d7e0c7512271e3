"""The benchmark's sustained verdict: one rule for fixed and search steps, the generator's schedule included."""

from __future__ import annotations

from typing import Any

from bench.__main__ import sustained


def _step(**overrides: Any) -> dict[str, Any]:
    # A 1,000/s quick step as measured at stop 26: answered within a second, drained, notified in time.
    step: dict[str, Any] = {
        "offered_rps": 1000.0,
        "achieved_rps": 1000.0,
        "accepted": 3000,
        "errors": 0,
        "unsent": 0,
        "not_drained": 0,
        "drain_s": 0.01,
        "intake_p99_ms": 896.9,
        "e2e_p99_ms": 658.9,
    }
    return step | overrides


def test_a_step_that_keeps_up_is_sustained() -> None:
    assert sustained(_step())


def test_answers_seconds_after_their_due_time_are_not_on_schedule() -> None:
    # The 2,000/s search step of a quick run: every request got its 201 and received -> notified looked
    # fine (it starts when intake reads the request), but requests waited 3-5 s to be read at all.
    assert not sustained(
        _step(offered_rps=2000.0, achieved_rps=2000.0, intake_p99_ms=5451.7, e2e_p99_ms=801.1)
    )


def test_each_condition_fails_the_step() -> None:
    for bad in (
        {"errors": 1},
        {"unsent": 1},
        {"accepted": 0},
        {"achieved_rps": 940.0},
        {"not_drained": 3},
        {"drain_s": 1.5},
        {"intake_p99_ms": None},
        {"e2e_p99_ms": 1000.0},
        {"e2e_p99_ms": None},
    ):
        assert not sustained(_step(**bad)), bad
