"""Kaplan-Meier curves of time to first recidivism, published on a coarse grid of days; pure.

Time runs from first contact to the follow-up that first reported a re-arrest or a return to
exploitation (the event happened on or before that day), and a youth without one is censored at their
last follow-up with a known answer. The estimate (lifelines' ``KaplanMeierFitter``, exponential
Greenwood 95% bands) uses every day; the release shows it only at the grid's days, which fall between
the follow-up windows (3, 6, 12 and 24 months), with the numbers at risk there and the events in
between, so every count a reader can take from a curve is a count the release suppresses like any other.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from services.intake.evaluation.suppression import Ledger

__all__ = ["GRID_DAYS", "LANDMARK_DAYS", "Curve", "CurveData", "curve_data", "materialise", "register"]

# Between the follow-up windows (due day -5 to +12): after 3, 6, 12 and 24 months.
GRID_DAYS: tuple[int, ...] = (0, 120, 210, 400, 760)
# Curves by intervention family start here: a youth belongs to a family's curve if they received it
# before this day and had no recidivism reported up to it (a landmark analysis; comparing youth by help
# received at any time would credit the help with the time they had to survive to receive it).
LANDMARK_DAYS = 120


class Curve(msgspec.Struct, kw_only=True):
    """A survival curve at the grid's days; it stops where a count at risk or an event count would be
    too small to publish."""

    time_days: list[int]
    survival: list[float]
    ci_low: list[float]
    ci_high: list[float]
    at_risk: list[int]
    # Life-table style for follow-ups that come in windows: on day 0 everyone at the start; on a later
    # day, the youth at risk entering the interval that ends on it, and that interval's events.
    events: list[int]


@dataclass(frozen=True)
class CurveData:
    members: tuple[int, ...]
    durations: tuple[float, ...]
    events: tuple[bool, ...]
    start: int = 0

    @property
    def grid(self) -> list[int]:
        """The grid's days from the start up to the first one after every duration."""
        last = max(self.durations, default=0.0)
        days = [t for t in GRID_DAYS if t >= self.start]
        return [t for i, t in enumerate(days) if i == 0 or days[i - 1] <= last]


def _key(name: Hashable, what: str, k: int) -> tuple[Hashable, ...]:
    return ("survival", name, what, k)


def _small(counts: Sequence[int], threshold: int) -> bool:
    return any(1 <= n <= threshold for n in counts)


def _shown_days(data: CurveData, threshold: int) -> list[int]:
    """The grid days the curve shows. A day after the first is shown when the youth at risk entering the
    interval that ends on it, and its events and censorings, are not small counts; an interval that
    would show a small count is merged with the next (the step then spans both). Whatever follows
    the last day shown can be worked out from the group's totals in other tables, so if it would be a
    small count the curve ends a day earlier (rather than hide a count elsewhere to protect it). A
    Kaplan-Meier step taken with a handful at risk would describe those few youths, so the curve is
    never stretched to cover them."""
    grid = data.grid
    rows = list(zip(data.durations, data.events, strict=True))

    def window(lo: float, hi: float) -> tuple[int, int]:
        inside = [e for d, e in rows if lo <= d < hi]
        return sum(inside), len(inside) - sum(inside)

    shown: list[int] = []
    for t in grid:
        if not shown:
            if sum(1 for d, _ in rows if d >= t) <= threshold:
                break
            shown.append(t)
            continue
        entering = shown[-1]
        if sum(1 for d, _ in rows if d >= entering) <= threshold:
            break
        # A window with a small count of events or censorings is merged with the next one.
        if not _small(window(entering, t), threshold):
            shown.append(t)
    while len(shown) >= 2 and _small(window(shown[-1], float("inf")), threshold):
        shown.pop()
    return shown


def register(ledger: Ledger, name: Hashable, data: CurveData, *, cost: float = 1.0) -> None:
    """Put the curve's counts into the release, life-table style: for each interval between shown grid
    days, the youth at risk entering it and its events (published: the curve's steps reveal them) and
    censorings (derivable, so protected); and whatever follows the last day shown (protected)."""
    grid = _shown_days(data, ledger.threshold)
    if not grid:
        return
    rows = list(zip(data.members, data.durations, data.events, strict=True))
    # at_risk k: youth at risk on grid day k (entering interval k, which ends on day k + 1).
    for k, t in enumerate(grid):
        members = [m for m, d, _ in rows if d >= t]
        ledger.add(_key(name, "at_risk", k), members, cost=cost * 2, published=k < len(grid) - 1 or k == 0)
        if k + 1 < len(grid):
            window = [(m, e) for m, d, e in rows if t <= d < grid[k + 1]]
            ledger.add(_key(name, "events", k), [m for m, e in window if e], cost=cost)
            ledger.add(_key(name, "censored", k), [m for m, e in window if not e], published=False)
    last = len(grid) - 1
    tail = [(m, e) for m, d, e in rows if d >= grid[last]]
    ledger.add(_key(name, "events_after", 0), [m for m, e in tail if e], published=False)
    ledger.add(_key(name, "censored_after", 0), [m for m, e in tail if not e], published=False)
    # What the curve says: at risk on one day = at risk the next + events + censored in between; and
    # its events add up to the group's (which other tables may show).
    for k in range(last):
        ledger.constrain(
            _key(name, "at_risk", k),
            [_key(name, "at_risk", k + 1), _key(name, "events", k), _key(name, "censored", k)],
        )
    ledger.constrain(
        _key(name, "at_risk", last), [_key(name, "events_after", 0), _key(name, "censored_after", 0)]
    )
    ledger.add(_key(name, "events_total", 0), [m for m, _, e in rows if e], published=False)
    ledger.constrain(
        _key(name, "events_total", 0),
        [*(_key(name, "events", k) for k in range(last)), _key(name, "events_after", 0)],
    )


def materialise(ledger: Ledger, name: Hashable, data: CurveData) -> Curve:
    """The published curve: Kaplan-Meier at each grid day while its counts are shown."""
    from lifelines import KaplanMeierFitter  # type: ignore[import-untyped]

    out = Curve(time_days=[], survival=[], ci_low=[], ci_high=[], at_risk=[], events=[])
    grid = _shown_days(data, ledger.threshold)
    if not data.members:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines warns about ties and pandas internals; none matter here
        kmf = KaplanMeierFitter(alpha=0.05).fit(np.array(data.durations), np.array(data.events))
        times = np.asarray(kmf.survival_function_.index, dtype=float)
        surv = np.asarray(kmf.survival_function_.iloc[:, 0], dtype=float)
        band = kmf.confidence_interval_survival_function_
        lows, highs = np.asarray(band.iloc[:, 0], dtype=float), np.asarray(band.iloc[:, 1], dtype=float)
    for k, t in enumerate(grid):
        if not ledger.has(_key(name, "at_risk", k)):
            break
        # Day 0 shows everyone at the start; day k > 0 the youth entering the interval ending on it.
        at_risk = ledger.shown(_key(name, "at_risk", max(0, k - 1)))
        events = ledger.shown(_key(name, "events", k - 1)) if k else 0
        if not isinstance(at_risk, int) or not isinstance(events, int) or at_risk == 0:
            break
        # The estimate just before day t: the interval's events are in, the next interval's are not.
        j = int(np.searchsorted(times, t, side="left")) - 1
        # Members of a landmark curve all reached its first day without an event: it starts at 1.
        s, lo, hi = (1.0, 1.0, 1.0) if j < 0 else (surv[j], lows[j], highs[j])
        out.time_days.append(t)
        out.survival.append(round(float(s), 4))
        out.ci_low.append(round(float(lo), 4))
        out.ci_high.append(round(float(hi), 4))
        out.at_risk.append(at_risk)
        out.events.append(events)
    return out


def curve_data(
    members: Sequence[int], durations: Sequence[float], events: Sequence[bool], start: int = 0
) -> CurveData:
    keep = [(m, d, e) for m, d, e in zip(members, durations, events, strict=True) if d >= start]
    return CurveData(
        members=tuple(m for m, _, _ in keep),
        durations=tuple(d for _, d, _ in keep),
        events=tuple(e for _, _, e in keep),
        start=start,
    )
