"""Programme evaluation: de-identified export rows and the aggregate report with small-cell suppression; pure."""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
import math
import statistics
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from services.intake.evaluation.suppression import (
    SUPPRESSED,
    THRESHOLD,
    Grid,
    Shown,
    suppress_grid,
    suppress_list,
)
from shared.casework import FAMILIES, FOLLOWUPS, INTERVENTION_TYPES, MEASURES, family_of, favourable
from shared.codes import NEED_CODES, REFERRAL_SETTINGS, REFERRAL_STATUSES
from shared.lifecycle import CLOSE_REASONS

__all__ = [
    "REGIONS",
    "CohortRecord",
    "ExportRow",
    "RateRow",
    "Report",
    "age_band",
    "build_report",
    "export_csv",
    "export_rows",
    "pseudonym",
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
# Post-intake follow-ups: the intake observation describes the year before the referral (baseline).
_AFTER_INTAKE = tuple(p for p in FOLLOWUPS if p != "intake")


def wilson(events: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (good at small n and at 0 or n events)."""
    if n <= 0 or not 0 <= events <= n:
        raise ValueError("need 0 <= events <= n and n > 0")
    p = events / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    # At 0 or n events the bound is exactly 0 or 1; floating point would leave 1e-17 either side.
    low = 0.0 if events == 0 else max(0.0, centre - half)
    high = 1.0 if events == n else min(1.0, centre + half)
    return low, high


def age_band(age: int) -> str:
    for lo, hi in _AGE_BANDS:
        if lo <= age <= hi:
            return f"{lo}-{hi}"
    return "other"


def _band(value: int | None, cuts: Sequence[tuple[int, int | None, str]]) -> str | None:
    if value is None:
        return None
    for lo, hi, label in cuts:
        if value >= lo and (hi is None or value <= hi):
            return label
    return None


_ARREST_BANDS = ((0, 0, "0"), (1, 1, "1"), (2, 3, "2-3"), (4, None, "4+"))
_FIRST_EXPLOITED_BANDS = (
    (0, 11, "under 12"),
    (12, 13, "12-13"),
    (14, 15, "14-15"),
    (16, 17, "16-17"),
    (18, None, "18+"),
)


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
    age_years: int
    urgency: str
    needs: list[str]
    status: str
    close_reason: str | None = None
    intake: dict[str, Any] = msgspec.field(default_factory=dict)
    engaged_at: datetime | None = None
    closed_at: datetime | None = None
    interventions: dict[str, int] = msgspec.field(default_factory=dict)
    # follow-up point -> measure -> value
    outcomes: dict[str, dict[str, str]] = msgspec.field(default_factory=dict)


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
                age_first_exploited_band=_band(intake.get("age_first_exploited"), _FIRST_EXPLOITED_BANDS),
                education_level=intake.get("education_level"),
                socioeconomic_status=intake.get("socioeconomic_status"),
                prior_arrests_band=_band(intake.get("prior_arrests"), _ARREST_BANDS),
                foster_care_history=intake.get("foster_care_history"),
                days_to_first_contact=(
                    math.floor(_days(r.received_at, r.engaged_at)) if r.engaged_at is not None else None
                ),
                days_in_service=(math.floor(_days(r.engaged_at, end)) if r.engaged_at is not None else None),
                interventions={t: r.interventions.get(t, 0) for t in INTERVENTION_TYPES},
                outcomes={p: {m: r.outcomes.get(p, {}).get(m) for m in MEASURES} for p in FOLLOWUPS},
            )
        )
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
                )
            ]
        )
    return out.getvalue()


# --------------------------------------------------------------------------- the aggregate report


class RateRow(msgspec.Struct, kw_only=True):
    """A share with its Wilson 95% interval; shown only when neither the events nor the non-events
    are suppressed (either would give the other away through n)."""

    label: str
    n: Shown
    events: Shown
    rate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    # Compared with the baseline (cohort rate, or the intake observation): percentage points, and
    # "lower"/"higher" only when the interval excludes the baseline, else "similar".
    difference_pp: float | None = None
    versus_baseline: str | None = None


class FamilyComparison(msgspec.Struct, kw_only=True):
    family: str
    received: RateRow
    not_received: RateRow
    table: Grid


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


class Report(msgspec.Struct, kw_only=True):
    generated_at: datetime
    period_start: str | None
    period_end: str | None
    threshold: int
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
    notes: list[str]


def _region(r: CohortRecord) -> str:
    return r.region if r.region in REGIONS else "out_of_area"


def _count_grid(
    records: Sequence[CohortRecord], row_of: Any, row_labels: Sequence[str], *, drop_empty: bool = True
) -> Grid:
    counts = {label: [0] * len(REGIONS) for label in row_labels}
    for r in records:
        label = row_of(r)
        if label in counts:
            counts[label][REGIONS.index(_region(r))] += 1
    labels = [lbl for lbl in row_labels if not drop_empty or any(counts[lbl])]
    # A region nobody was referred from (usually "out of area") only adds a column of zeros.
    keep = [j for j in range(len(REGIONS)) if any(counts[lbl][j] for lbl in labels)] or [0]
    return suppress_grid(
        labels, [REGIONS[j] for j in keep], [[counts[lbl][j] for j in keep] for lbl in labels]
    )


def _rate_row(label: str, events: Shown, non_events: Shown, n: Shown, baseline: float | None) -> RateRow:
    row = RateRow(label=label, n=n, events=events)
    if isinstance(events, int) and isinstance(non_events, int) and events + non_events > 0:
        total = events + non_events
        row.rate = events / total
        row.ci_low, row.ci_high = wilson(events, total)
        if baseline is not None:
            row.difference_pp = round((row.rate - baseline) * 100, 1)
            if row.ci_high < baseline:
                row.versus_baseline = "lower"
            elif row.ci_low > baseline:
                row.versus_baseline = "higher"
            else:
                row.versus_baseline = "similar"
    return row


def _rates_from_grid(grid: Grid, baseline: float | None) -> list[RateRow]:
    return [
        _rate_row(label, grid.cells[i][0], grid.cells[i][1], grid.row_totals[i], baseline)
        for i, label in enumerate(grid.rows)
    ]


def _recidivist(r: CohortRecord) -> bool | None:
    """Re-arrested or returned to exploitation at any follow-up after intake; None when never observed."""
    seen = False
    for point in _AFTER_INTAKE:
        obs = r.outcomes.get(point, {})
        for measure in ("re_arrest", "return_to_exploitation"):
            value = obs.get(measure)
            if value in ("yes", "no"):
                seen = True
                if value == "yes":
                    return True
    return False if seen else None


def _families(r: CohortRecord) -> frozenset[str]:
    return frozenset(f for t, n in r.interventions.items() if n > 0 and (f := family_of(t)) is not None)


def _combination_label(families: frozenset[str]) -> str:
    if not families:
        return "none of the five"
    return " + ".join(f for f in FAMILIES if f in families)


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) == 1:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, q2, q3


def build_report(records: Sequence[CohortRecord], now: datetime, provenance: Sequence[str] = ()) -> Report:
    """Aggregate the cohort into the published report. Every count goes through suppression."""
    months = sorted(r.received_at.strftime("%Y-%m") for r in records)
    (total_shown,), _ = suppress_list([len(records)])

    by_source = _count_grid(
        records,
        lambda r: r.intake.get("referral_setting") or "not_recorded",
        [*REFERRAL_SETTINGS, "not_recorded"],
    )
    by_status = _count_grid(records, lambda r: r.status, REFERRAL_STATUSES)
    closes = _count_grid(records, lambda r: r.close_reason if r.status == "closed" else None, CLOSE_REASONS)

    # Time from receipt to first contact, for referrals that reached engagement.
    contact: list[ContactTime] = []
    engaged = [r for r in records if r.engaged_at is not None]
    groups = [(REGION_LABELS[g], [r for r in engaged if _region(r) == g]) for g in REGIONS] + [
        ("All regions", engaged)
    ]
    for label, group in groups:
        if not group and label != "All regions":
            continue
        (n_shown,), _ = suppress_list([len(group)])
        row = ContactTime(label=label, n=n_shown)
        if len(group) > THRESHOLD:
            # Quartiles of fewer than 11 people would describe individuals: only for n shown.
            q1, q2, q3 = _quartiles(sorted(_days(r.received_at, r.engaged_at) for r in group if r.engaged_at))
            row.median_days, row.p25_days, row.p75_days = round(q2, 1), round(q1, 1), round(q3, 1)
        contact.append(row)

    def bucket(r: CohortRecord) -> str | None:
        if r.engaged_at is None:
            return None
        d = _days(r.received_at, r.engaged_at)
        return next(label for label, upper in _CONTACT_BUCKETS if d < upper)

    histogram = _count_grid(records, bucket, [b for b, _ in _CONTACT_BUCKETS], drop_empty=False)

    # Recidivism among youth observed at least once after intake.
    observed = [(r, rec) for r in records if (rec := _recidivist(r)) is not None]
    k = sum(1 for _, rec in observed if rec)
    (k_shown, non_shown), n_shown = suppress_list([k, len(observed) - k])
    baseline = _rate_row("All youth followed up", k_shown, non_shown, n_shown, None)
    base_rate = baseline.rate

    by_family = []
    for family in FAMILIES:
        got = [rec for r, rec in observed if family in _families(r)]
        not_got = [rec for r, rec in observed if family not in _families(r)]
        counts = [[sum(got), len(got) - sum(got)], [sum(not_got), len(not_got) - sum(not_got)]]
        grid = suppress_grid(["received", "not received"], ["re-offended or re-exploited", "neither"], counts)
        rows = _rates_from_grid(grid, base_rate)
        by_family.append(FamilyComparison(family=family, received=rows[0], not_received=rows[1], table=grid))

    # Exact combinations of the five families; one too small to ever be shown (both parts need 11+)
    # is folded into "other combinations" rather than listed as a row of suppressed cells.
    combos: dict[str, list[int]] = {}
    for r, rec in observed:
        cell = combos.setdefault(_combination_label(_families(r)), [0, 0])
        cell[0 if rec else 1] += 1
    other = [0, 0]
    for label in [c for c, v in combos.items() if sum(v) < MIN_GROUP]:
        k_other, n_other = combos.pop(label)
        other = [other[0] + k_other, other[1] + n_other]
    ordered = sorted(combos, key=lambda c: (-sum(combos[c]), c))
    if sum(other):
        combos[OTHER_COMBINATIONS] = other
        ordered.append(OTHER_COMBINATIONS)
    combo_grid = suppress_grid(
        ordered, ["re-offended or re-exploited", "neither"], [combos[c] for c in ordered]
    )

    # How many of the five kinds of help: coarse enough to show something in a small cohort.
    dose = {label: [0, 0] for label in _DOSES}
    for r, rec in observed:
        count = len(_families(r))
        label = next(lbl for lbl, (lo, hi) in _DOSES.items() if lo <= count <= hi)
        dose[label][0 if rec else 1] += 1
    dose_labels = [lbl for lbl in _DOSES if sum(dose[lbl])]
    dose_grid = suppress_grid(
        dose_labels, ["re-offended or re-exploited", "neither"], [dose[lbl] for lbl in dose_labels]
    )

    series = []
    for measure in MEASURES:
        counts = []
        for point in FOLLOWUPS:
            values = [
                favourable(measure, v) for r in records if (v := r.outcomes.get(point, {}).get(measure))
            ]
            good = sum(1 for v in values if v is True)
            bad = sum(1 for v in values if v is False)
            counts.append([good, bad])
        grid = suppress_grid(list(FOLLOWUPS), ["favourable", "not favourable"], counts)
        intake_row = _rate_row("intake", grid.cells[0][0], grid.cells[0][1], grid.row_totals[0], None)
        rows = [intake_row] + [
            _rate_row(p, grid.cells[i][0], grid.cells[i][1], grid.row_totals[i], intake_row.rate)
            for i, p in enumerate(FOLLOWUPS)
            if i > 0
        ]
        series.append(
            MeasureSeries(measure=measure, favourable=_FAVOURABLE_LABEL[measure], rows=rows, table=grid)
        )

    return Report(
        generated_at=now,
        period_start=months[0] if months else None,
        period_end=months[-1] if months else None,
        threshold=THRESHOLD,
        provenance=list(provenance),
        referrals=total_shown,
        referrals_by_source=by_source,
        status_by_region=by_status,
        close_reasons=closes,
        time_to_first_contact=contact,
        time_to_first_contact_histogram=histogram,
        recidivism_definition=(
            "Re-arrested or returned to exploitation at any follow-up after intake (3, 6, 12 or 24 months),"
            " among youth with at least one such observation."
        ),
        followed_up=n_shown,
        recidivism_baseline=baseline,
        recidivism_by_family=by_family,
        recidivism_by_combination=_rates_from_grid(combo_grid, base_rate),
        recidivism_by_combination_table=combo_grid,
        combination_min_group=MIN_GROUP,
        recidivism_by_count=_rates_from_grid(dose_grid, base_rate),
        recidivism_by_count_table=dose_grid,
        outcomes_by_followup=series,
        notes=[
            f"Counts from 1 to {THRESHOLD} are shown as '{SUPPRESSED}', and further cells are suppressed where"
            " a hidden count could otherwise be worked out from the totals. Shares are shown only when"
            " neither part is suppressed.",
            "Intervals are Wilson 95% score intervals. 'Lower' or 'higher' than the baseline means the"
            " interval excludes the baseline rate; otherwise the difference is within chance.",
            "These are observational comparisons: youth who received a kind of help differ from those who"
            " did not in other ways too, so a difference is an association, not the effect of the help.",
            "Intervention families: housing (housing, housing placement); therapy (mental health,"
            " therapy, substance use); legal (legal, court advocacy, vacatur or record relief,"
            " immigration, T-visa or immigration relief); education and work (education, employment,"
            " school enrolment, job training); mentoring (mentoring, peer support).",
        ],
    )


_FAVOURABLE_LABEL = {
    "re_arrest": "not re-arrested since the previous follow-up",
    "return_to_exploitation": "not returned to exploitation since the previous follow-up",
    "housing_stability": "stably housed",
    "in_school_or_work": "in school or work",
    "safety": "feels safe",
}
