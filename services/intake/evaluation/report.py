"""Programme evaluation: de-identified export rows and the aggregate report, suppressed as one release; pure."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import math
import statistics
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import msgspec

from services.intake.evaluation import analysis, survival
from services.intake.evaluation.analysis import (
    MODEL_DESCRIPTION,
    Comparison,
    PowerNote,
    TermEstimate,
    arrests_band,
    first_exploited_band,
    level_of,
)
from services.intake.evaluation.kanon import K_ANONYMITY, generalise
from services.intake.evaluation.suppression import PROTECTION, SUPPRESSED, THRESHOLD, Grid, Ledger, Shown
from services.intake.evaluation.survival import Curve
from shared.casework import (
    FAMILIES,
    FOLLOWUPS,
    INTERVENTION_TYPES,
    MEASURES,
    favourable,
    local_date,
)
from shared.codes import NEED_CODES, REFERRAL_SETTINGS, REFERRAL_STATUSES
from shared.lifecycle import CLOSE_REASONS

__all__ = [
    "REGIONS",
    "VARIABLES",
    "Adjusted",
    "CohortRecord",
    "ExportRow",
    "LevelRate",
    "RateRow",
    "Report",
    "Survival",
    "age_band",
    "build_release",
    "build_report",
    "export_csv",
    "export_rows",
    "pseudonym",
    "tables_csv",
    "wilson",
]

Z95 = 1.959963984540054
# Columns of every regional table; referrals outside both regions are kept (they were received).
REGIONS: tuple[str, ...] = ("south_la", "san_fernando_valley", "out_of_area")
REGION_LABELS = {
    "south_la": "South LA",
    "san_fernando_valley": "San Fernando Valley",
    "out_of_area": "Out of area",
}
_AGE_BANDS = ((10, 13), (14, 15), (16, 17), (18, 20), (21, 24))
_CONTACT_BUCKETS: tuple[tuple[str, float], ...] = (
    ("under 1 day", 1.0),
    ("1-2 days", 3.0),
    ("3-7 days", 8.0),
    ("8-14 days", 15.0),
    ("15-30 days", 31.0),
    ("over 30 days", math.inf),
)
# A group needs 11+ with and 11+ without the event before its rate can be shown at all.
MIN_GROUP = 2 * (THRESHOLD + 1)
OTHER_COMBINATIONS = "other combinations"
_DOSES = {
    "none or one kind": (0, 1),
    "two kinds": (2, 2),
    "three kinds": (3, 3),
    "four or five kinds": (4, 5),
}


def wilson(events: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (good at small n and at 0 or n events)."""
    from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]

    if n <= 0 or not 0 <= events <= n:
        raise ValueError("need 0 <= events <= n and n > 0")
    alpha = 2 * (1 - _normal_cdf(z))
    low, high = proportion_confint(events, n, alpha=alpha, method="wilson")
    # At 0 or n events the bound is exactly 0 or 1; floating point would leave 1e-17 either side.
    return (0.0 if events == 0 else max(0.0, float(low))), (1.0 if events == n else min(1.0, float(high)))


def _normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def age_band(age: int) -> str:
    for lo, hi in _AGE_BANDS:
        if lo <= age <= hi:
            return f"{lo}-{hi}"
    return "other"


def pseudonym(salt: bytes, key: str) -> str:
    """A per-export pseudonym: HMAC-SHA256 under a random salt that is used once and never stored, so
    the same youth gets unlinkable ids in two exports and nobody can reverse one to a referral id."""
    return hmac.new(salt, key.encode(), hashlib.sha256).hexdigest()[:20]


class CohortRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One referral as the evaluation reads it: routing facts, coded intake attributes, case records."""

    referral_id: str
    # The pseudonymous youth key when intake derived one (several referrals of one youth), else the id.
    youth_key: str
    received_at: datetime
    region: str | None
    # The referring partner organisation's name (organisations, not people: see analysis.VARIABLES).
    partner: str | None = None
    age_years: int
    urgency: str
    needs: list[str]
    status: str
    close_reason: str | None = None
    intake: dict[str, Any] = msgspec.field(default_factory=dict)
    engaged_at: datetime | None = None
    closed_at: datetime | None = None
    interventions: dict[str, int] = msgspec.field(default_factory=dict)
    # intervention type -> the first day it was delivered (an exposure counts only from then on)
    intervention_dates: dict[str, date] = msgspec.field(default_factory=dict)
    # follow-up point -> measure -> value
    outcomes: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)
    # follow-up point -> measure -> the day it was observed
    outcome_dates: dict[str, dict[str, date]] = msgspec.field(default_factory=dict)
    # Child-protection protocol (issue 18): minutes from receipt to the in-person advocate response, and
    # the medical exam's recorded outcome (accepted, declined, not_applicable), when completed.
    advocate_minutes: float | None = None
    exam_outcome: str | None = None


class ExportRow(msgspec.Struct, kw_only=True):
    """One referral of one youth, de-identified: no names, dates of birth, ZIPs, exact dates or ids."""

    pid: str
    episode: int
    referral_month: str
    region: str
    age_band: str
    urgency: str
    needs: list[str]
    status: str
    close_reason: str | None
    referral_setting: str | None
    prior_services: str | None
    age_first_exploited_band: str | None
    education_level: str | None
    socioeconomic_status: str | None
    prior_arrests_band: str | None
    foster_care_history: bool | None
    days_to_first_contact: int | None
    days_in_service: int | None
    interventions: dict[str, int]
    outcomes: dict[str, dict[str, str | None]]
    # Quasi-identifiers coarsened in this row for k-anonymity (see kanon.py), e.g. ["referral_month"].
    generalised: list[str] = msgspec.field(default_factory=list)


def _days(start: datetime, end: datetime) -> float:
    return (end - start).total_seconds() / 86400.0


def export_rows(records: Iterable[CohortRecord], salt: bytes, now: datetime) -> list[ExportRow]:
    """Rows for the evaluator's export, ordered by pseudonym (random per export) so that row order
    does not link two exports either."""
    recs = sorted(records, key=lambda r: (r.youth_key, r.received_at, r.referral_id))
    episodes: dict[str, int] = {}
    rows = []
    for r in recs:
        episodes[r.youth_key] = episodes.get(r.youth_key, 0) + 1
        intake = r.intake
        end = r.closed_at or now
        rows.append(
            ExportRow(
                pid=pseudonym(salt, r.youth_key),
                episode=episodes[r.youth_key],
                referral_month=r.received_at.strftime("%Y-%m"),
                region=r.region or "out_of_area",
                age_band=age_band(r.age_years),
                urgency=r.urgency,
                needs=sorted(r.needs, key=NEED_CODES.index),
                status=r.status,
                close_reason=r.close_reason,
                referral_setting=intake.get("referral_setting"),
                prior_services=intake.get("prior_services"),
                age_first_exploited_band=first_exploited_band(intake.get("age_first_exploited")),
                education_level=intake.get("education_level"),
                socioeconomic_status=intake.get("socioeconomic_status"),
                prior_arrests_band=arrests_band(intake.get("prior_arrests")),
                foster_care_history=intake.get("foster_care_history"),
                days_to_first_contact=(
                    math.floor(_days(r.received_at, r.engaged_at)) if r.engaged_at is not None else None
                ),
                days_in_service=(math.floor(_days(r.engaged_at, end)) if r.engaged_at is not None else None),
                interventions={t: r.interventions.get(t, 0) for t in INTERVENTION_TYPES},
                outcomes={p: {m: r.outcomes.get(p, {}).get(m) for m in MEASURES} for p in FOLLOWUPS},
            )
        )
    # Region x month x age band x setting shared by at least K_ANONYMITY youth, or coarsened (and said so).
    generalise(rows, K_ANONYMITY)
    rows.sort(key=lambda row: (row.pid, row.episode))
    return rows


def csv_header() -> list[str]:
    return [
        "pid",
        "episode",
        "referral_month",
        "region",
        "age_band",
        "urgency",
        *(f"need_{n}" for n in NEED_CODES),
        "status",
        "close_reason",
        "referral_setting",
        "prior_services",
        "age_first_exploited_band",
        "education_level",
        "socioeconomic_status",
        "prior_arrests_band",
        "foster_care_history",
        "days_to_first_contact",
        "days_in_service",
        *(f"interventions_{t}" for t in INTERVENTION_TYPES),
        *(f"{p}_{m}" for p in FOLLOWUPS for m in MEASURES),
        "generalised",
    ]


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def export_csv(rows: Sequence[ExportRow]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(csv_header())
    for r in rows:
        w.writerow(
            [
                _cell(v)
                for v in (
                    r.pid,
                    r.episode,
                    r.referral_month,
                    r.region,
                    r.age_band,
                    r.urgency,
                    *(n in r.needs for n in NEED_CODES),
                    r.status,
                    r.close_reason,
                    r.referral_setting,
                    r.prior_services,
                    r.age_first_exploited_band,
                    r.education_level,
                    r.socioeconomic_status,
                    r.prior_arrests_band,
                    r.foster_care_history,
                    r.days_to_first_contact,
                    r.days_in_service,
                    *(r.interventions[t] for t in INTERVENTION_TYPES),
                    *(r.outcomes[p][m] for p in FOLLOWUPS for m in MEASURES),
                    ";".join(r.generalised),
                )
            ]
        )
    return out.getvalue()


# --------------------------------------------------------------------------- the aggregate report

# The collected variables the report crosses with outcomes, in the contract's order. Partners are
# organisations, not people: they are named (the programme manager must know which partner's youth
# fare how to act on it), and their small counts are suppressed like every other.
VARIABLES: tuple[str, ...] = (
    "referral_setting",
    "partner",
    "prior_services",
    "age_first_exploited",
    "education_level",
    "socioeconomic_status",
    "prior_arrests",
    "foster_care_history",
    "region",
)
_LEVEL_ORDER: dict[str, tuple[str, ...]] = {
    "referral_setting": REFERRAL_SETTINGS,
    "prior_services": ("none", "voluntary", "mandated"),
    "age_first_exploited": analysis.FIRST_EXPLOITED_LEVELS,
    "education_level": ("none", "primary", "some_high_school", "high_school", "some_college", "college"),
    "socioeconomic_status": ("very_low", "low", "moderate", "high"),
    "prior_arrests": analysis.ARREST_LEVELS,
    "foster_care_history": ("no", "yes"),
    "region": REGIONS,
}
_EVENT_COLUMNS = ["re-offended or re-exploited", "neither"]
# What hiding a count costs readers (suppression hides the cheapest complements that protect): an
# ordinary cell 1, a margin 3-4, the numbers every reader looks at first this much.
_HEADLINE = 100.0


class RateRow(msgspec.Struct, kw_only=True):
    """A share with its Wilson 95% interval; shown only when neither the events nor the non-events
    are suppressed (either would give the other away through n)."""

    label: str
    n: Shown
    events: Shown
    rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    # Kept for readers of earlier reports; no longer filled: a group is compared with another group
    # (``Report.comparisons``), never with a cohort that contains it.
    difference_pp: float | None = None
    versus_baseline: str | None = None


class LevelRate(msgspec.Struct, kw_only=True):
    """One level of a collected variable: youth, events, and the share with its Wilson 95% interval."""

    level: str
    n: Shown
    events: Shown
    rate: float | None
    ci_low: float | None
    ci_high: float | None


class FamilyComparison(msgspec.Struct, kw_only=True):
    family: str
    received: RateRow
    not_received: RateRow
    table: Grid
    # received minus not received (Newcombe interval, Holm-adjusted p); None when a count is hidden.
    difference: Comparison | None = None


class ContactTime(msgspec.Struct, kw_only=True):
    label: str
    n: Shown
    median_days: float | None = None
    p25_days: float | None = None
    p75_days: float | None = None


class MeasureSeries(msgspec.Struct, kw_only=True):
    measure: str
    favourable: str
    rows: list[RateRow]
    table: Grid


class Survival(msgspec.Struct, kw_only=True):
    definition: str
    landmark_days: int
    overall: Curve
    by_intervention_family: dict[str, Curve]
    without_intervention_family: dict[str, Curve]
    by_prior_services: dict[str, Curve]


class Adjusted(msgspec.Struct, kw_only=True):
    model: str
    terms: list[TermEstimate]
    youth: Shown
    events: Shown
    intervals: int | None
    power: list[PowerNote]
    limits: list[str]
    problems: list[str]


class ProtocolFigures(msgspec.Struct, kw_only=True):
    """Child-protection protocol (issue 18), suppressed with everything else: minutes from receipt to
    the in-person advocate response, and the share of medical exams offered that were accepted (among
    those with an outcome recorded)."""

    advocate_response: ContactTime
    exam_uptake: RateRow


class Report(msgspec.Struct, kw_only=True):
    generated_at: datetime
    period_start: str | None
    period_end: str | None
    threshold: int
    # No combination of published numbers narrows a hidden count from 1 to threshold below this range.
    protection_interval: list[int]
    provenance: list[str]
    referrals: Shown
    referrals_by_source: Grid
    status_by_region: Grid
    close_reasons: Grid
    time_to_first_contact: list[ContactTime]
    time_to_first_contact_histogram: Grid
    recidivism_definition: str
    followed_up: Shown
    recidivism_baseline: RateRow
    recidivism_by_family: list[FamilyComparison]
    recidivism_by_combination: list[RateRow]
    recidivism_by_combination_table: Grid
    # Combinations with fewer youth than this are folded into "other combinations".
    combination_min_group: int
    recidivism_by_count: list[RateRow]
    recidivism_by_count_table: Grid
    outcomes_by_followup: list[MeasureSeries]
    by_variable: dict[str, list[LevelRate]]
    engagement_by_variable: dict[str, list[LevelRate]]
    comparisons: list[Comparison]
    comparison_method: str
    survival: Survival
    adjusted: Adjusted
    notes: list[str]
    protocol: ProtocolFigures | None = None


def _region(r: CohortRecord) -> str:
    return r.region if r.region in REGIONS else "out_of_area"


class _GridSpec:
    """A two-way table of record sets with its margins, registered in the ledger."""

    def __init__(
        self,
        ledger: Ledger,
        name: str,
        rows: Sequence[str],
        columns: Sequence[str],
        members: dict[tuple[str, str], list[int]],
        *,
        drop_empty: bool = True,
        drop_empty_columns: bool = True,
    ) -> None:
        self.ledger, self.name = ledger, name
        self.rows = [r for r in rows if not drop_empty or any(members.get((r, c)) for c in columns)]
        keep = [c for c in columns if any(members.get((r, c)) for r in self.rows)]
        self.columns = (keep or list(columns[:1])) if drop_empty_columns else list(columns)
        for r in self.rows:
            for c in self.columns:
                ledger.add((name, "cell", r, c), members.get((r, c), []))
            ledger.add((name, "row", r), [m for c in self.columns for m in members.get((r, c), [])], cost=4)
        for c in self.columns:
            ledger.add((name, "col", c), [m for r in self.rows for m in members.get((r, c), [])], cost=4)
        ledger.add(
            (name, "total"),
            [m for r in self.rows for c in self.columns for m in members.get((r, c), [])],
            cost=_HEADLINE,
        )
        for r in self.rows:
            ledger.constrain((name, "row", r), [(name, "cell", r, c) for c in self.columns])
        for c in self.columns:
            ledger.constrain((name, "col", c), [(name, "cell", r, c) for r in self.rows])
        ledger.constrain((name, "total"), [(name, "row", r) for r in self.rows])
        ledger.constrain((name, "total"), [(name, "col", c) for c in self.columns])

    def grid(self) -> Grid:
        s, n = self.ledger.shown, self.name
        return Grid(
            rows=list(self.rows),
            columns=list(self.columns),
            cells=[[s((n, "cell", r, c)) for c in self.columns] for r in self.rows],
            row_totals=[s((n, "row", r)) for r in self.rows],
            column_totals=[s((n, "col", c)) for c in self.columns],
            total=s((n, "total")),
        )


def _by_region(
    ledger: Ledger, name: str, records: Sequence[CohortRecord], row_of: Any, labels: Sequence[str], **kw: Any
) -> _GridSpec:
    members: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(records):
        label = row_of(r)
        if label in labels:
            members.setdefault((label, _region(r)), []).append(i)
    return _GridSpec(ledger, name, labels, REGIONS, members, **kw)


def _rate(label: str, events: Shown, n: Shown) -> RateRow:
    row = RateRow(label=label, n=n, events=events)
    if isinstance(events, int) and isinstance(n, int) and n > 0:
        row.rate = events / n
        row.ci_low, row.ci_high = wilson(events, n)
    return row


def _rates_from_grid(grid: Grid) -> list[RateRow]:
    return [_rate(label, grid.cells[i][0], grid.row_totals[i]) for i, label in enumerate(grid.rows)]


def _combination_label(families: frozenset[str]) -> str:
    if not families:
        return "none of the five"
    return " + ".join(f for f in FAMILIES if f in families)


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def _contact_bucket(r: CohortRecord) -> str | None:
    if r.engaged_at is None:
        return None
    d = _days(r.received_at, r.engaged_at)
    return next(label for label, upper in _CONTACT_BUCKETS if d < upper)


def _level_rates(ledger: Ledger, name: str, variable: str, levels: list[str]) -> list[LevelRate]:
    out = []
    for level in levels:
        n, events = (
            ledger.shown((name, variable, level, "n")),
            ledger.shown((name, variable, level, "events")),
        )
        rate = _rate(level, events, n)
        out.append(
            LevelRate(
                level=level, n=n, events=events, rate=rate.rate, ci_low=rate.ci_low, ci_high=rate.ci_high
            )
        )
    return out


def build_report(records: Sequence[CohortRecord], now: datetime, provenance: Sequence[str] = ()) -> Report:
    """Aggregate the cohort into the published report. Every count of every table goes into one ledger
    and is suppressed together with all the others (see suppression.py)."""
    return build_release(records, now, provenance)[0]


def build_release(
    records: Sequence[CohortRecord], now: datetime, provenance: Sequence[str] = ()
) -> tuple[Report, Ledger]:
    """The report and the ledger of every count behind it (for the suppression audit)."""
    recs = list(records)
    months = sorted(r.received_at.strftime("%Y-%m") for r in recs)
    # Counts are of referrals (0..n-1), except the follow-up tables, which count observations: referral
    # i observed at the p-th follow-up point is unit n + p * n + i.
    ledger = Ledger(len(recs) * (1 + len(FOLLOWUPS)))
    ledger.add(("referrals",), range(len(recs)), cost=_HEADLINE)

    by_source = _by_region(
        ledger,
        "referrals_by_source",
        recs,
        lambda r: r.intake.get("referral_setting") or "not_recorded",
        [*REFERRAL_SETTINGS, "not_recorded"],
    )
    by_status = _by_region(ledger, "status_by_region", recs, lambda r: r.status, REFERRAL_STATUSES)
    closes = _by_region(
        ledger,
        "close_reasons",
        recs,
        lambda r: r.close_reason if r.status == "closed" else None,
        CLOSE_REASONS,
    )
    histogram = _by_region(
        ledger,
        "time_to_first_contact_histogram",
        recs,
        _contact_bucket,
        [b for b, _ in _CONTACT_BUCKETS],
        drop_empty=False,
    )
    engaged = [i for i, r in enumerate(recs) if r.engaged_at is not None]
    contact_groups = [(REGION_LABELS[g], [i for i in engaged if _region(recs[i]) == g]) for g in REGIONS]
    contact_groups = [(label, g) for label, g in contact_groups if g] + [("All regions", engaged)]
    for label, group in contact_groups:
        ledger.add(("time_to_first_contact", label), group, cost=_HEADLINE if label == "All regions" else 4)
    ledger.constrain(
        ("time_to_first_contact", "All regions"),
        [("time_to_first_contact", label) for label, _ in contact_groups[:-1]],
    )
    # Youth reached, by their status now: never published, but what a reader can reason about from the
    # status table and the time-to-contact table together (reached youth are engaged, closed, ...).
    for label, group in contact_groups[:-1]:
        parts = []
        for status in REFERRAL_STATUSES:
            subset = [i for i in group if recs[i].status == status]
            if subset:
                parts.append(ledger.add(("reached_by_status", label, status), subset, published=False))
        ledger.constrain(("time_to_first_contact", label), parts)

    # Recidivism: the follow-up intervals of each referral (analysis.recidivism_intervals).
    intervals = [analysis.recidivism_intervals(r) for r in recs]
    followed = [i for i, ivs in enumerate(intervals) if ivs]
    recidivist = {i for i in followed if intervals[i][-1].event}
    # Families received before the interval in which recidivism was reported (or last assessed).
    before = {i: intervals[i][-1].families for i in followed}
    ledger.add(("recidivism", "n"), followed, cost=_HEADLINE)
    ledger.add(("recidivism", "events"), sorted(recidivist), cost=_HEADLINE)
    ledger.add(("recidivism", "non_events"), [i for i in followed if i not in recidivist], published=False)
    ledger.constrain(("recidivism", "n"), [("recidivism", "events"), ("recidivism", "non_events")])

    family_specs = {}
    for family in FAMILIES:
        members: dict[tuple[str, str], list[int]] = {}
        for i in followed:
            row = "received" if family in before[i] else "not received"
            members.setdefault((row, _EVENT_COLUMNS[0 if i in recidivist else 1]), []).append(i)
        family_specs[family] = _GridSpec(
            ledger,
            f"recidivism_by_family:{family}",
            ["received", "not received"],
            _EVENT_COLUMNS,
            members,
            drop_empty=False,
            drop_empty_columns=False,
        )

    combos: dict[str, list[int]] = {}
    for i in followed:
        combos.setdefault(_combination_label(before[i]), []).append(i)
    other: list[int] = []
    for label in [c for c, v in combos.items() if len(v) < MIN_GROUP]:
        other.extend(combos.pop(label))
    ordered = sorted(combos, key=lambda c: (-len(combos[c]), c))
    if other:
        combos[OTHER_COMBINATIONS] = other
        ordered.append(OTHER_COMBINATIONS)
    combo_spec = _GridSpec(
        ledger,
        "recidivism_by_combination",
        ordered,
        _EVENT_COLUMNS,
        _split(combos, recidivist),
        drop_empty_columns=False,
    )
    dose: dict[str, list[int]] = {label: [] for label in _DOSES}
    for i in followed:
        count = len(before[i])
        dose[next(lbl for lbl, (lo, hi) in _DOSES.items() if lo <= count <= hi)].append(i)
    dose_labels = [lbl for lbl in _DOSES if dose[lbl]]
    dose_spec = _GridSpec(
        ledger,
        "recidivism_by_count",
        dose_labels,
        _EVENT_COLUMNS,
        _split(dose, recidivist),
        drop_empty_columns=False,
    )

    series_specs = []
    for measure in MEASURES:
        members = {}
        for p, point in enumerate(FOLLOWUPS):
            for i, r in enumerate(recs):
                value = r.outcomes.get(point, {}).get(measure)
                verdict = favourable(measure, value) if value else None
                if verdict is not None:
                    unit = len(recs) * (1 + p) + i
                    members.setdefault((point, "favourable" if verdict else "not favourable"), []).append(
                        unit
                    )
        series_specs.append(
            (
                measure,
                _GridSpec(
                    ledger,
                    f"outcomes_by_followup:{measure}",
                    list(FOLLOWUPS),
                    ["favourable", "not favourable"],
                    members,
                    drop_empty=False,
                    drop_empty_columns=False,
                ),
            )
        )

    # Outcomes by every collected variable: recidivism among the followed up, engagement among all.
    levels: dict[tuple[str, str], list[str]] = {}
    for name, population, events in (
        ("by_variable", followed, recidivist),
        ("engagement_by_variable", list(range(len(recs))), set(engaged)),
    ):
        for what, everyone in (
            ("n", population),
            ("events", [i for i in population if i in events]),
            ("non_events", [i for i in population if i not in events]),
        ):
            ledger.add((name, "all", what), everyone, published=False)
        for variable in VARIABLES:
            groups: dict[str, list[int]] = {}
            for i in population:
                groups.setdefault(level_of(recs[i], variable), []).append(i)
            order = _LEVEL_ORDER.get(variable) or tuple(sorted(k for k in groups if k != "not_recorded"))
            present = [lvl for lvl in (*order, "not_recorded") if groups.get(lvl)]
            levels[(name, variable)] = present
            for level in present:
                ledger.add((name, variable, level, "n"), groups[level], cost=3)
                ledger.add(
                    (name, variable, level, "events"), [i for i in groups[level] if i in events], cost=2
                )
                ledger.add(
                    (name, variable, level, "non_events"),
                    [i for i in groups[level] if i not in events],
                    published=False,
                )
                ledger.constrain(
                    (name, variable, level, "n"),
                    [(name, variable, level, "events"), (name, variable, level, "non_events")],
                )
            for what in ("n", "events", "non_events"):
                ledger.constrain((name, "all", what), [(name, variable, lvl, what) for lvl in present])

    # Time to first recidivism.
    durations = {
        i: float((intervals[i][-1].end - local_date(recs[i].engaged_at)).days)  # type: ignore[arg-type]
        for i in followed
    }
    curves: dict[tuple[str, str], survival.CurveData] = {}

    def curve(kind: str, label: str, members: list[int], start: int = 0) -> None:
        data = survival.curve_data(
            members, [durations[i] for i in members], [i in recidivist for i in members], start
        )
        curves[(kind, label)] = data
        survival.register(ledger, (kind, label), data, cost=10.0 if kind == "overall" else 1.0)

    curve("overall", "all", followed)
    for level in ("none", "voluntary", "mandated", "not_recorded"):
        group = [i for i in followed if level_of(recs[i], "prior_services") == level]
        if group:
            curve("by_prior_services", level, group)
    landmark = survival.LANDMARK_DAYS
    for family in FAMILIES:
        got = [
            i
            for i in followed
            if family
            in analysis.families_received(
                recs[i],
                local_date(recs[i].engaged_at) + timedelta(days=landmark),  # type: ignore[arg-type]
            )
        ]
        got_set = set(got)
        curve("by_intervention_family", family, got, landmark)
        curve("without_intervention_family", family, [i for i in followed if i not in got_set], landmark)

    fit = analysis.fit_hazard_model(recs, threshold=THRESHOLD)
    ledger.add(("adjusted", "youth"), fit.youth, cost=_HEADLINE)
    ledger.add(("adjusted", "events"), fit.events, cost=_HEADLINE)
    ledger.add(("adjusted", "non_events"), sorted(set(fit.youth) - set(fit.events)), published=False)
    ledger.constrain(("adjusted", "youth"), [("adjusted", "events"), ("adjusted", "non_events")])

    # Child-protection protocol: advocate responses timed, exams offered with an outcome and accepted.
    advocated = [i for i, r in enumerate(recs) if r.advocate_minutes is not None]
    examined = [i for i, r in enumerate(recs) if r.exam_outcome is not None]
    accepted = [i for i in examined if recs[i].exam_outcome == "accepted"]
    ledger.add(("protocol", "advocate_response"), advocated)
    ledger.add(("protocol", "exam", "n"), examined)
    ledger.add(("protocol", "exam", "accepted"), accepted)
    ledger.add(
        ("protocol", "exam", "other"), [i for i in examined if i not in set(accepted)], published=False
    )
    ledger.constrain(
        ("protocol", "exam", "n"), [("protocol", "exam", "accepted"), ("protocol", "exam", "other")]
    )

    ledger.suppress()

    # ------------------------------------------------------------------ materialise what is shown
    advocate = ContactTime(
        label="Receipt to in-person advocate response", n=ledger.shown(("protocol", "advocate_response"))
    )
    if ledger.visible(("protocol", "advocate_response")) and len(advocated) > THRESHOLD:
        q1, q2, q3 = _quartiles(sorted(recs[i].advocate_minutes or 0.0 for i in advocated))
        # Minutes, in the fields the other time tables use for days.
        advocate.median_days, advocate.p25_days, advocate.p75_days = round(q2, 1), round(q1, 1), round(q3, 1)
    protocol_figures = ProtocolFigures(
        advocate_response=advocate,
        exam_uptake=_rate(
            "Medical exam offered: accepted",
            ledger.shown(("protocol", "exam", "accepted")),
            ledger.shown(("protocol", "exam", "n")),
        ),
    )
    contact: list[ContactTime] = []
    for label, group in contact_groups:
        reached = ContactTime(label=label, n=ledger.shown(("time_to_first_contact", label)))
        if ledger.visible(("time_to_first_contact", label)) and len(group) > THRESHOLD:
            q1, q2, q3 = _quartiles(
                sorted(_days(recs[i].received_at, recs[i].engaged_at) for i in group)  # type: ignore[arg-type]
            )
            reached.median_days, reached.p25_days, reached.p75_days = round(q2, 1), round(q1, 1), round(q3, 1)
        contact.append(reached)

    baseline = _rate(
        "All youth followed up", ledger.shown(("recidivism", "events")), ledger.shown(("recidivism", "n"))
    )
    by_family = []
    comparison_groups: list[tuple[str, str, str, int, int]] = []
    references: dict[tuple[str, str], str] = {}
    for family, spec in family_specs.items():
        grid = spec.grid()
        pair = _rates_from_grid(grid)
        by_family.append(FamilyComparison(family=family, received=pair[0], not_received=pair[1], table=grid))
        for share in pair:
            if isinstance(share.events, int) and isinstance(share.n, int) and share.n > 0:
                comparison_groups.append(
                    ("recidivism", f"family:{family}", share.label, share.events, share.n)
                )
        references[("recidivism", f"family:{family}")] = "not received"

    by_variable: dict[str, list[LevelRate]] = {}
    engagement: dict[str, list[LevelRate]] = {}
    for name, target, outcome in (
        ("by_variable", by_variable, "recidivism"),
        ("engagement_by_variable", engagement, "engagement"),
    ):
        for variable in VARIABLES:
            rows_ = _level_rates(ledger, name, variable, levels[(name, variable)])
            target[variable] = rows_
            shown = [
                (r.level, r.events, r.n)
                for r in rows_
                if isinstance(r.n, int)
                and isinstance(r.events, int)
                and r.n > 0
                and r.level != "not_recorded"
            ]
            if len(shown) < 2:
                continue
            # The reference is the largest level shown (the most precise comparison for the others).
            references[(outcome, variable)] = max(shown, key=lambda s: s[2])[0]
            comparison_groups.extend((outcome, variable, lvl, e, n) for lvl, e, n in shown)
    comparisons = analysis.newcombe_comparisons(comparison_groups, references)
    for fam in by_family:
        fam.difference = next(
            (c for c in comparisons if c.variable == f"family:{fam.family}" and c.level == "received"), None
        )

    surv = Survival(
        definition=(
            "Days from first contact to the follow-up that first reported a re-arrest or a return to"
            " exploitation; youth without one are censored at their last follow-up with a known answer."
            " Kaplan-Meier estimates with 95% confidence bands, shown at the days between follow-up"
            " windows while the numbers at risk and the events are large enough to publish."
        ),
        landmark_days=landmark,
        overall=survival.materialise(ledger, ("overall", "all"), curves[("overall", "all")]),
        by_intervention_family={
            f: survival.materialise(
                ledger, ("by_intervention_family", f), curves[("by_intervention_family", f)]
            )
            for f in FAMILIES
        },
        without_intervention_family={
            f: survival.materialise(
                ledger, ("without_intervention_family", f), curves[("without_intervention_family", f)]
            )
            for f in FAMILIES
        },
        by_prior_services={
            label: survival.materialise(ledger, (kind, label), data)
            for (kind, label), data in curves.items()
            if kind == "by_prior_services"
        },
    )

    adjusted = Adjusted(
        model=MODEL_DESCRIPTION,
        terms=fit.terms,
        youth=ledger.shown(("adjusted", "youth")),
        events=ledger.shown(("adjusted", "events")),
        intervals=fit.intervals if ledger.visible(("adjusted", "youth")) else None,
        power=fit.power,
        limits=_LIMITS,
        problems=fit.problems,
    )
    if not ledger.visible(("adjusted", "youth")) or not ledger.visible(("adjusted", "events")):
        # Too few youth to describe at all: no estimates either.
        adjusted.terms = [
            TermEstimate(term=t.term, ratio=None, ci_low=None, ci_high=None, p=None) for t in fit.terms
        ]
        adjusted.power = [
            PowerNote(term=p.term, detectable_below=None, detectable_above=None, verdict="not estimated")
            for p in fit.power
        ]

    series = []
    for measure, spec in series_specs:
        grid = spec.grid()
        rows = [_rate(p, grid.cells[i][0], grid.row_totals[i]) for i, p in enumerate(FOLLOWUPS)]
        series.append(
            MeasureSeries(measure=measure, favourable=_FAVOURABLE_LABEL[measure], rows=rows, table=grid)
        )

    report = Report(
        generated_at=now,
        period_start=months[0] if months else None,
        period_end=months[-1] if months else None,
        threshold=THRESHOLD,
        protection_interval=list(PROTECTION),
        provenance=list(provenance),
        referrals=ledger.shown(("referrals",)),
        referrals_by_source=by_source.grid(),
        status_by_region=by_status.grid(),
        close_reasons=closes.grid(),
        time_to_first_contact=contact,
        time_to_first_contact_histogram=histogram.grid(),
        recidivism_definition=(
            "Re-arrested or returned to exploitation, as reported at a follow-up after intake (3, 6, 12 or"
            " 24 months after first contact), among youth with at least one such follow-up. Kinds of help"
            " count when first received before the follow-up period in which recidivism was reported"
            " (or last assessed), so help given after the event is never credited with preventing it."
        ),
        followed_up=ledger.shown(("recidivism", "n")),
        recidivism_baseline=baseline,
        recidivism_by_family=by_family,
        recidivism_by_combination=_rates_from_grid(combo_spec.grid()),
        recidivism_by_combination_table=combo_spec.grid(),
        combination_min_group=MIN_GROUP,
        recidivism_by_count=_rates_from_grid(dose_spec.grid()),
        recidivism_by_count_table=dose_spec.grid(),
        outcomes_by_followup=series,
        by_variable=by_variable,
        engagement_by_variable=engagement,
        comparisons=comparisons,
        comparison_method=(
            "Each level is compared with its variable's largest level (kinds of help: received with not"
            " received): the difference of the two shares with Newcombe's hybrid score 95% interval and a"
            f" score test; Holm's correction across all {len(comparisons)} comparisons keeps the chance of"
            " any false 'higher' or 'lower' at 5%."
        ),
        survival=surv,
        adjusted=adjusted,
        notes=[
            f"Counts from 1 to {THRESHOLD} are shown as '{SUPPRESSED}'. Every count in the report, its"
            " web page and its CSV tables is suppressed together: further counts are hidden until no"
            " combination of published numbers (margins, other tables, curves) narrows a hidden small"
            f" count below the range {PROTECTION[0]} to {PROTECTION[1]} (checked by linear programming)."
            " Shares are shown only when both parts are shown.",
            "Intervals are 95%: Wilson score intervals for shares, Newcombe intervals for differences"
            " between groups (with Holm's correction for the number of comparisons), Kaplan-Meier bands"
            " for survival, cluster-robust Wald intervals for hazard ratios.",
            "Follow-ups of the same youth are not independent samples: outcomes over time are described,"
            " not tested against each other.",
            *_LIMITS,
            "Intervention families: housing (housing, housing placement); therapy (mental health,"
            " therapy, substance use); legal (legal, court advocacy, vacatur or record relief,"
            " immigration, T-visa or immigration relief); education and work (education, employment,"
            " school enrolment, job training); mentoring (mentoring, peer support).",
            "Child-protection protocol: the advocate response's median and quartiles are in minutes from"
            " receipt (not days); exam uptake is the share accepted among medical exams offered whose"
            " outcome was recorded.",
        ],
        protocol=protocol_figures,
    )
    return report, ledger


def _split(groups: dict[str, list[int]], events: set[int]) -> dict[tuple[str, str], list[int]]:
    out: dict[tuple[str, str], list[int]] = {}
    for label, members in groups.items():
        for i in members:
            out.setdefault((label, _EVENT_COLUMNS[0 if i in events else 1]), []).append(i)
    return out


_LIMITS = [
    "These are observational data: youth were not assigned their help at random. The adjusted model"
    " accounts for the intake variables it names, not for what else led a case manager to offer a kind"
    " of help (confounding by indication: help tends to go to youth at higher risk, which can hide a"
    " benefit, or to youth already doing better, which can fake one).",
    "A ratio below 1 means fewer first recidivisms in the periods after that help was received than"
    " among comparable youth without it; it is an association after adjustment, not proof of effect.",
    "Missing intake answers count as the reference level in the model; recidivism known only from"
    " follow-ups that took place (a youth who drops out is censored, assumed to be like those who stay).",
]

_FAVOURABLE_LABEL = {
    "re_arrest": "not re-arrested since the previous follow-up",
    "return_to_exploitation": "not returned to exploitation since the previous follow-up",
    "housing_stability": "stably housed",
    "in_school_or_work": "in school or work",
    "safety": "feels safe",
}


# --------------------------------------------------------------------------- the release as CSV


def tables_csv(report: Report) -> str:
    """Every table of the report as one long CSV (table, row, column, value): the same suppressed
    numbers as the JSON and the HTML, never a count they do not show."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["table", "row", "column", "value"])

    def grid(name: str, g: Grid) -> None:
        for i, row in enumerate(g.rows):
            for j, col in enumerate(g.columns):
                w.writerow([name, row, col, g.cells[i][j]])
            w.writerow([name, row, "total", g.row_totals[i]])
        for j, col in enumerate(g.columns):
            w.writerow([name, "total", col, g.column_totals[j]])
        w.writerow([name, "total", "total", g.total])

    w.writerow(["referrals", "all", "count", report.referrals])
    grid("referrals_by_source", report.referrals_by_source)
    grid("status_by_region", report.status_by_region)
    grid("close_reasons", report.close_reasons)
    grid("time_to_first_contact_histogram", report.time_to_first_contact_histogram)
    for c in report.time_to_first_contact:
        for field in ("n", "median_days", "p25_days", "p75_days"):
            w.writerow(["time_to_first_contact", c.label, field, _cell(getattr(c, field))])
    w.writerow(["recidivism", "all followed up", "n", report.followed_up])
    w.writerow(["recidivism", "all followed up", "events", report.recidivism_baseline.events])
    for fam in report.recidivism_by_family:
        grid(f"recidivism_by_family:{fam.family}", fam.table)
    grid("recidivism_by_combination", report.recidivism_by_combination_table)
    grid("recidivism_by_count", report.recidivism_by_count_table)
    for s in report.outcomes_by_followup:
        grid(f"outcomes_by_followup:{s.measure}", s.table)
    for name, table in (
        ("by_variable", report.by_variable),
        ("engagement_by_variable", report.engagement_by_variable),
    ):
        for variable, rows in table.items():
            for r in rows:
                for field in ("n", "events", "rate", "ci_low", "ci_high"):
                    w.writerow([f"{name}:{variable}", r.level, field, _cell(getattr(r, field))])
    for comp in report.comparisons:
        for field in ("difference", "ci_low", "ci_high", "p", "p_holm", "verdict"):
            w.writerow(
                [
                    f"comparison:{comp.outcome}:{comp.variable}",
                    f"{comp.level} vs {comp.reference}",
                    field,
                    getattr(comp, field),
                ]
            )
    surv = report.survival
    named = [("overall", surv.overall)]
    named += [(f"by_intervention_family:{k}", v) for k, v in surv.by_intervention_family.items()]
    named += [(f"without_intervention_family:{k}", v) for k, v in surv.without_intervention_family.items()]
    named += [(f"by_prior_services:{k}", v) for k, v in surv.by_prior_services.items()]
    for name, curve in named:
        for k, t in enumerate(curve.time_days):
            for field in ("survival", "ci_low", "ci_high", "at_risk", "events"):
                w.writerow([f"survival:{name}", t, field, getattr(curve, field)[k]])
    w.writerow(["adjusted", "model", "youth", report.adjusted.youth])
    w.writerow(["adjusted", "model", "events", report.adjusted.events])
    for term in report.adjusted.terms:
        for field in ("ratio", "ci_low", "ci_high", "p"):
            w.writerow(["adjusted", term.term, field, _cell(getattr(term, field))])
    return out.getvalue()
