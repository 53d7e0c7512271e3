"""The Wilson score interval against published values, and its edges."""

from __future__ import annotations

import pytest

from services.intake.evaluation.report import wilson


@pytest.mark.parametrize(
    ("events", "n", "low", "high"),
    [
        # Values from Newcombe (1998) Table I method 3 and standard calculators (z = 1.959964).
        (0, 10, 0.0, 0.2775),
        (5, 10, 0.2366, 0.7634),
        (10, 10, 0.7225, 1.0),
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_known_values(events: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson(events, n)
    assert lo == pytest.approx(low, abs=5e-5)
    assert hi == pytest.approx(high, abs=5e-5)


def test_bounds_and_symmetry() -> None:
    for n in (1, 2, 7, 50, 1000):
        for k in range(n + 1):
            lo, hi = wilson(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0
            lo2, hi2 = wilson(n - k, n)
            assert lo == pytest.approx(1 - hi2)
            assert hi == pytest.approx(1 - lo2)
    assert wilson(0, 5)[0] == 0.0
    assert wilson(5, 5)[1] == 1.0


def test_narrows_with_n() -> None:
    widths = [wilson(n // 4, n)[1] - wilson(n // 4, n)[0] for n in (20, 80, 320)]
    assert widths == sorted(widths, reverse=True)


@pytest.mark.parametrize(("events", "n"), [(0, 0), (-1, 5), (6, 5)])
def test_invalid(events: int, n: int) -> None:
    with pytest.raises(ValueError, match="events"):
        wilson(events, n)
