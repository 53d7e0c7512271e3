"""Token buckets: bursts up to capacity, steady refill, exact wait times, per-key isolation."""

from __future__ import annotations

import pytest

from services.intake.core.ratelimit import TokenBuckets


def test_burst_then_refill() -> None:
    b = TokenBuckets(per_minute=60, burst=3)
    assert [b.take(b"k", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = b.take(b"k", 0.0)
    assert wait == pytest.approx(1.0)
    assert b.take(b"k", 0.5) == pytest.approx(0.5)
    assert b.take(b"k", 1.0) == 0.0


def test_keys_are_independent() -> None:
    b = TokenBuckets(per_minute=60, burst=1)
    assert b.take(b"a", 0.0) == 0.0
    assert b.take(b"a", 0.0) > 0
    assert b.take(b"b", 0.0) == 0.0


def test_memory_is_bounded() -> None:
    b = TokenBuckets(per_minute=60, burst=1, max_keys=100)
    for i in range(1000):
        b.take(str(i).encode(), 0.0)
    assert len(b._buckets) <= 100
