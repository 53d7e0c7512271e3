"""Outcome analysis of the cohort: follow-up intervals, the adjusted hazard model, group differences; pure.

Recidivism is a re-arrest or a return to exploitation reported at a follow-up after intake (3, 6, 12 or
24 months after first contact; each asks about the time since the previous follow-up). The event is
only ever known to have happened *between* two follow-ups, so time is grouped: the adjusted model is a
discrete-time proportional-hazards model (a binomial GLM with the complementary log-log link over one
row per youth and follow-up interval, an intercept per kind of interval). Its coefficients are log
hazard ratios of the continuous-time proportional-hazards (Cox) model observed at the follow-ups
(Prentice and Gloeckler 1978), and unlike odds ratios they do not depend on the intervals' lengths
(3, 3, 6 and 12 months). An intervention counts in an interval only if it was first delivered before the
interval began, so it always precedes the event it is credited with preventing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import msgspec
import numpy as np

from shared.casework import FAMILIES, FOLLOWUPS, family_of, local_date

__all__ = [
    "FAMILY_TERMS",
    "INTAKE_TERMS",
    "MODEL_DESCRIPTION",
    "TERMS",
    "Comparison",
    "FitResult",
    "Interval",
    "PowerNote",
    "TermEstimate",
    "covariates",
    "families_received",
    "fit_hazard_model",
    "level_of",
    "newcombe_comparisons",
    "recidivism_intervals",
]

Z95 = 1.959963984540054
Z80 = 0.8416212335729143
RECIDIVISM_MEASURES = ("re_arrest", "return_to_exploitation")
AFTER_INTAKE = tuple(p for p in FOLLOWUPS if p != "intake")

# The adjusted model's terms; reference levels: no earlier services, no prior arrests, first exploited
# at 14 or older (or not recorded), SES above very low, South LA.
FAMILY_TERMS: tuple[str, ...] = tuple(f"family:{f}" for f in FAMILIES)
INTAKE_TERMS: tuple[str, ...] = (
    "prior_services:voluntary",
    "prior_services:mandated",
    "prior_arrests:1",
    "prior_arrests:2-3",
    "prior_arrests:4+",
    "foster_care_history",
    "age_first_exploited:under 14",
    "socioeconomic_status:very_low",
    "region:san_fernando_valley",
)
TERMS: tuple[str, ...] = (*FAMILY_TERMS, *INTAKE_TERMS)
MODEL_DESCRIPTION = (
    "discrete-time proportional hazards (binomial GLM, complementary log-log link, one row per youth and"
    " follow-up interval, an intercept per kind of interval; intervention families counted from their"
    " first delivery before the interval; cluster-robust standard errors by youth): ratios are hazard"
    " ratios of a first re-arrest or return to exploitation"
)

_ARREST_BANDS = ((0, 0, "0"), (1, 1, "1"), (2, 3, "2-3"), (4, None, "4+"))
_FIRST_EXPLOITED_BANDS = (
    (0, 11, "under 12"),
    (12, 13, "12-13"),
    (14, 15, "14-15"),
    (16, 17, "16-17"),
    (18, None, "18+"),
)


def band(value: int | None, cuts: Sequence[tuple[int, int | None, str]]) -> str | None:
    if value is None:
        return None
    for lo, hi, label in cuts:
        if value >= lo and (hi is None or value <= hi):
            return label
    return None


def arrests_band(value: int | None) -> str | None:
    return band(value, _ARREST_BANDS)


def first_exploited_band(value: int | None) -> str | None:
    return band(value, _FIRST_EXPLOITED_BANDS)


ARREST_LEVELS = tuple(label for _, _, label in _ARREST_BANDS)
FIRST_EXPLOITED_LEVELS = tuple(label for _, _, label in _FIRST_EXPLOITED_BANDS)


def level_of(record: Any, variable: str) -> str:
    """The record's level of a collected variable, as the report groups it ("not_recorded" if absent)."""
    intake = record.intake
    value: object
    if variable == "region":
        value = record.region or "out_of_area"
    elif variable == "partner":
        value = record.partner
    elif variable == "age_first_exploited":
        value = first_exploited_band(intake.get("age_first_exploited"))
    elif variable == "prior_arrests":
        value = arrests_band(intake.get("prior_arrests"))
    elif variable == "foster_care_history":
        raw = intake.get("foster_care_history")
        value = None if raw is None else ("yes" if raw else "no")
    else:
        value = intake.get(variable)
    return "not_recorded" if value is None else str(value)


# --------------------------------------------------------------------------- follow-up intervals


@dataclass(frozen=True)
class Interval:
    """One follow-up interval of one youth's first-recidivism history."""

    start: date
    end: date
    start_point: str
    end_point: str
    event: bool
    families: frozenset[str]

    @property
    def kind(self) -> str:
        return f"{self.start_point}-{self.end_point}"


def families_received(record: Any, before: date) -> frozenset[str]:
    """Intervention families first delivered on a day before ``before``."""
    return frozenset(
        f for t, day in record.intervention_dates.items() if day < before and (f := family_of(t)) is not None
    )


def recidivism_intervals(record: Any) -> list[Interval]:
    """The record's intervals from first contact to each follow-up at which recidivism was known, up to
    and including the first one that reports it. A follow-up that established neither measure is
    skipped: the next interval runs from the last known one."""
    if record.engaged_at is None:
        return []
    start = local_date(record.engaged_at)
    start_point = "intake"
    out: list[Interval] = []
    for point in AFTER_INTAKE:
        obs = record.outcomes.get(point, {})
        known = [v for m in RECIDIVISM_MEASURES if (v := obs.get(m)) in ("yes", "no")]
        if not known:
            continue
        days = [d for m in RECIDIVISM_MEASURES if (d := record.outcome_dates.get(point, {}).get(m))]
        end = max(days) if days else start
        event = "yes" in known
        out.append(
            Interval(start, max(end, start), start_point, point, event, families_received(record, start))
        )
        if event:
            break
        start, start_point = max(end, start), point
    return out


def covariates(record: Any, families: frozenset[str]) -> dict[str, float]:
    """The model's design row for a record in an interval where ``families`` had been received."""
    intake = record.intake
    x = {f"family:{f}": float(f in families) for f in FAMILIES}
    services = intake.get("prior_services")
    x["prior_services:voluntary"] = float(services == "voluntary")
    x["prior_services:mandated"] = float(services == "mandated")
    arrests = arrests_band(intake.get("prior_arrests"))
    for level in ("1", "2-3", "4+"):
        x[f"prior_arrests:{level}"] = float(arrests == level)
    x["foster_care_history"] = float(bool(intake.get("foster_care_history")))
    first = intake.get("age_first_exploited")
    x["age_first_exploited:under 14"] = float(first is not None and first < 14)
    x["socioeconomic_status:very_low"] = float(intake.get("socioeconomic_status") == "very_low")
    x["region:san_fernando_valley"] = float(record.region == "san_fernando_valley")
    return x


# --------------------------------------------------------------------------- the adjusted model


class TermEstimate(msgspec.Struct, kw_only=True):
    """One term as the contract publishes it: a hazard ratio with its 95% interval and p."""

    term: str
    ratio: float | None
    ci_low: float | None
    ci_high: float | None
    p: float | None


class PowerNote(msgspec.Struct, kw_only=True):
    """How large an effect of this term the data could have detected (80% power, two-sided 5%)."""

    term: str
    # Hazard ratios at or beyond which an effect would be detected 80% of the time at this sample size.
    detectable_below: float | None
    detectable_above: float | None
    # "protective" / "harmful" (interval excludes 1), "cannot tell" (it includes 1), "not estimated".
    verdict: str


@dataclass
class FitResult:
    terms: list[TermEstimate]
    power: list[PowerNote]
    # Youth (records) in the model, those with an event, and person-intervals (for the ledger).
    youth: list[int]
    events: list[int]
    intervals: int
    converged: bool
    problems: list[str]


def _support(rows: list[tuple[int, Interval, dict[str, float]]], term: str) -> tuple[set[int], set[int]]:
    exposed = {i for i, _, x in rows if x[term]}
    with_event = {i for i, iv, x in rows if x[term] and iv.event}
    return exposed, with_event


def fit_hazard_model(records: Sequence[Any], *, threshold: int = 10) -> FitResult:
    """Fit the discrete-time hazard model. A term whose exposed youth or exposed events number 1 to
    ``threshold`` is fitted (it still adjusts the others) but not reported: its ratio would describe a
    handful of people, and could not be estimated usefully anyway."""
    import statsmodels.api as sm  # type: ignore[import-untyped]

    rows: list[tuple[int, Interval, dict[str, float]]] = []
    clusters: dict[str, int] = {}
    groups: list[int] = []
    for i, r in enumerate(records):
        for iv in recidivism_intervals(r):
            rows.append((i, iv, covariates(r, iv.families)))
            groups.append(clusters.setdefault(r.youth_key, len(clusters)))
    # An interval kind with no events (or only events) says nothing about the ratios once it has its
    # own intercept (whose estimate would run off to infinity): leave those rows out.
    kinds: dict[str, list[bool]] = {}
    for _, iv, _ in rows:
        kinds.setdefault(iv.kind, []).append(iv.event)
    informative = {k for k, ev in kinds.items() if any(ev) and not all(ev)}
    keep = [j for j, (_, iv, _) in enumerate(rows) if iv.kind in informative]
    rows = [rows[j] for j in keep]
    groups = [groups[j] for j in keep]
    youth = sorted({i for i, _, _ in rows})
    events = sorted({i for i, iv, _ in rows if iv.event})
    problems: list[str] = []
    estimable = []
    for term in TERMS:
        if any(x[term] for _, _, x in rows) and not all(x[term] for _, _, x in rows):
            estimable.append(term)
    empty = FitResult(
        terms=[TermEstimate(term=t, ratio=None, ci_low=None, ci_high=None, p=None) for t in TERMS],
        power=[
            PowerNote(term=t, detectable_below=None, detectable_above=None, verdict="not estimated")
            for t in TERMS
        ],
        youth=youth,
        events=events,
        intervals=len(rows),
        converged=False,
        problems=problems,
    )
    kind_names = sorted(informative)
    if not rows or len(events) < 2 or len(rows) <= len(estimable) + len(kind_names):
        problems.append("too few youth with follow-ups to fit the model")
        return empty
    design = np.array(
        [[x[t] for t in estimable] + [float(iv.kind == k) for k in kind_names] for _, iv, x in rows]
    )
    y = np.array([float(iv.event) for _, iv, _ in rows])
    family = sm.families.Binomial(link=sm.families.links.CLogLog())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = sm.GLM(y, design, family=family).fit(
                cov_type="cluster", cov_kwds={"groups": np.array(groups)}, maxiter=200
            )
        except (ValueError, np.linalg.LinAlgError) as exc:  # singular design, separation
            problems.append(f"the model could not be fitted ({type(exc).__name__})")
            return empty
    for w in caught:
        problems.append(f"{type(w.message).__name__}: {str(w.message).splitlines()[0][:160]}")
    converged = bool(getattr(fit, "converged", True))
    params, bse, pvalues = np.asarray(fit.params), np.asarray(fit.bse), np.asarray(fit.pvalues)
    terms: list[TermEstimate] = []
    power: list[PowerNote] = []
    for term in TERMS:
        if term not in estimable:
            terms.append(TermEstimate(term=term, ratio=None, ci_low=None, ci_high=None, p=None))
            power.append(
                PowerNote(term=term, detectable_below=None, detectable_above=None, verdict="not estimated")
            )
            continue
        k = estimable.index(term)
        b, se, p = float(params[k]), float(bse[k]), float(pvalues[k])
        exposed, with_event = _support(rows, term)
        small = 1 <= len(exposed) <= threshold or 1 <= len(with_event) <= threshold
        unexposed = {i for i, _, x in rows if not x[term]}
        small = small or 1 <= len(unexposed) <= threshold
        if small or not converged or not all(map(math.isfinite, (b, se, p))) or se > 10:
            terms.append(TermEstimate(term=term, ratio=None, ci_low=None, ci_high=None, p=None))
            power.append(
                PowerNote(term=term, detectable_below=None, detectable_above=None, verdict="not estimated")
            )
            continue
        lo, hi = b - Z95 * se, b + Z95 * se
        terms.append(
            TermEstimate(term=term, ratio=math.exp(b), ci_low=math.exp(lo), ci_high=math.exp(hi), p=p)
        )
        mde = (Z95 + Z80) * se
        verdict = "protective" if hi < 0 else "harmful" if lo > 0 else "cannot tell"
        power.append(
            PowerNote(
                term=term,
                detectable_below=math.exp(-mde),
                detectable_above=math.exp(mde),
                verdict=verdict,
            )
        )
    return FitResult(
        terms=terms,
        power=power,
        youth=youth,
        events=events,
        intervals=len(rows),
        converged=converged,
        problems=problems,
    )


# --------------------------------------------------------------------------- between-group differences


class Comparison(msgspec.Struct, kw_only=True):
    """A level's rate minus the reference level's, with its Newcombe 95% interval and Holm-adjusted p."""

    outcome: str
    variable: str
    level: str
    reference: str
    difference: float
    ci_low: float
    ci_high: float
    p: float
    p_holm: float
    # "higher" / "lower" when the Holm-adjusted p is below 0.05, else "similar".
    verdict: str


def newcombe_comparisons(
    groups: Sequence[tuple[str, str, str, int, int]], references: dict[tuple[str, str], str]
) -> list[Comparison]:
    """Compare each level (outcome, variable, level, events, n) with its reference level: Newcombe's
    hybrid score interval for the difference of two proportions, a score test for p, and Holm's
    correction across every comparison made in the report (family-wise error 5%)."""
    from statsmodels.stats.multitest import multipletests  # type: ignore[import-untyped]
    from statsmodels.stats.proportion import (  # type: ignore[import-untyped]
        confint_proportions_2indep,
        test_proportions_2indep,
    )

    by_key = {(o, v, lvl): (e, n) for o, v, lvl, e, n in groups}
    pending: list[tuple[str, str, str, str, float, float, float, float]] = []
    for outcome, variable, level, events, n in groups:
        ref = references.get((outcome, variable))
        if ref is None or level == ref or (outcome, variable, ref) not in by_key:
            continue
        ref_events, ref_n = by_key[(outcome, variable, ref)]
        if n <= 0 or ref_n <= 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # 0/n and n/n give 0/0 in the score test
            low, high = confint_proportions_2indep(
                events, n, ref_events, ref_n, method="newcomb", compare="diff"
            )
            test = test_proportions_2indep(events, n, ref_events, ref_n, method="score", compare="diff")
        p = float(test.pvalue)
        if not math.isfinite(p):
            p = 1.0
        pending.append(
            (outcome, variable, level, ref, events / n - ref_events / ref_n, float(low), float(high), p)
        )
    if not pending:
        return []
    adjusted = multipletests([row[7] for row in pending], alpha=0.05, method="holm")[1]
    out = []
    for (outcome, variable, level, ref, diff, low, high, p), p_holm in zip(pending, adjusted, strict=True):
        verdict = "similar" if p_holm >= 0.05 else ("higher" if diff > 0 else "lower")
        out.append(
            Comparison(
                outcome=outcome,
                variable=variable,
                level=level,
                reference=ref,
                difference=diff,
                ci_low=low,
                ci_high=high,
                p=p,
                p_holm=float(p_holm),
                verdict=verdict,
            )
        )
    return out
