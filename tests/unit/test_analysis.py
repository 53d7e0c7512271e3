"""The method's test: the adjusted model recovers what the simulator planted; follow-up intervals."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import pytest

from refnet_dev.simulate import PLANTED, cohort_records, plan_pilot
from services.intake.evaluation.analysis import (
    TERMS,
    fit_hazard_model,
    newcombe_comparisons,
    recidivism_intervals,
)
from services.intake.evaluation.report import CohortRecord

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
# The simulator's default seed, and the pilot's 5:1 split of South LA and the Valley (100:20) at 5,000.
# With 14 terms, each 95% interval misses its planted value one time in twenty, so a single draw holds
# all 14 only about half the time: this draw does (it was the first one run); other draws miss a term
# now and then (at 4,200:800 mentoring's interval is 0.36-0.60 around a planted 0.64; `refnet demo
# simulate --south 4167 --valley 833` through the API gave 2.03 (1.70-2.43) for 4+ arrests, planted
# 2.46, and the pure generator gives the same for that draw), which is why
# test_intervals_are_calibrated_across_seeds checks the coverage itself over independent draws.
SEED = 2026
SOUTH, VALLEY = 5000 * 5 // 6, 5000 - 5000 * 5 // 6


@pytest.fixture(scope="module")
def fit_5000() -> object:
    plans = plan_pilot(SEED, SOUTH, VALLEY, NOW)
    assert len(plans) == 5000
    return fit_hazard_model(cohort_records(plans))


def test_recovers_every_planted_effect_at_5000(fit_5000: object) -> None:
    fit = fit_5000
    assert fit.converged and not fit.problems  # type: ignore[attr-defined]
    rows = []
    for term in fit.terms:  # type: ignore[attr-defined]
        planted = PLANTED.get(term.term, 0.0)
        assert term.ratio is not None, f"{term.term} not estimated at N = 5,000"
        inside = term.ci_low <= math.exp(planted) <= term.ci_high
        rows.append(
            f"{term.term:32s} planted {math.exp(planted):5.2f}  estimated {term.ratio:5.2f}"
            f" [{term.ci_low:5.2f}, {term.ci_high:5.2f}]  {'inside' if inside else 'OUTSIDE'}"
        )
        # The planted value (on the model's own scale: a hazard ratio) lies in the 95% interval ...
        assert inside, rows[-1]
        # ... and every planted effect's direction is recovered beyond chance.
        if planted < 0:
            assert term.ci_high < 1, rows[-1]
        elif planted > 0:
            assert term.ci_low > 1, rows[-1]
    print("\n" + "\n".join(rows))
    assert {t.term for t in fit.terms} == set(TERMS)  # type: ignore[attr-defined]
    assert set(PLANTED) <= set(TERMS)


def test_intervals_are_calibrated_across_seeds() -> None:
    """Over independent pilots of 5,000 the 95% intervals hold the planted values about 95% of the
    time, and every planted effect's estimate points the planted way."""
    inside = total = 0
    for seed in range(1, 7):
        fit = fit_hazard_model(cohort_records(plan_pilot(seed, SOUTH, VALLEY, NOW)))
        for term in fit.terms:
            planted = PLANTED.get(term.term, 0.0)
            assert term.ratio is not None and term.ci_low is not None and term.ci_high is not None
            total += 1
            inside += term.ci_low <= math.exp(planted) <= term.ci_high
            if planted:
                assert (term.ratio < 1) == (planted < 0), (seed, term)
    assert inside / total >= 0.9, f"coverage {inside}/{total}"


def test_at_pilot_size_the_model_says_what_it_cannot_detect() -> None:
    fit = fit_hazard_model(cohort_records(plan_pilot(SEED, 100, 20, NOW)))
    verdicts = {p.term: p for p in fit.power}
    for term, planted in PLANTED.items():
        note = verdicts[term]
        if note.verdict in ("protective", "harmful"):
            continue
        assert note.verdict in ("cannot tell", "not estimated")
        if note.verdict == "cannot tell":
            # The effect it missed is smaller than what 120 youth can detect with 80% power.
            assert note.detectable_below is not None and note.detectable_above is not None
            assert note.detectable_below < math.exp(planted) < note.detectable_above or planted == 0
    undetected = [t for t in PLANTED if verdicts[t].verdict not in ("protective", "harmful")]
    assert "family:mentoring" in undetected and "family:housing" in undetected


def _record(**kw: object) -> CohortRecord:
    base: dict[str, object] = {
        "referral_id": "r1",
        "youth_key": "y1",
        "received_at": datetime(2025, 1, 1, 12, tzinfo=UTC),
        "region": "south_la",
        "age_years": 16,
        "urgency": "routine",
        "needs": ["housing"],
        "status": "engaged",
        "engaged_at": datetime(2025, 1, 3, 18, tzinfo=UTC),
    }
    base.update(kw)
    return CohortRecord(**base)  # type: ignore[arg-type]


def test_intervals_credit_help_only_before_the_period_and_stop_at_the_first_event() -> None:
    start = date(2025, 1, 3)
    rec = _record(
        intervention_dates={
            "housing_placement": start + timedelta(days=20),
            "therapy": start + timedelta(days=150),
        },
        outcomes={
            "intake": {"re_arrest": "yes"},  # the year before the referral: a baseline, never an event
            "m3": {"re_arrest": "no", "return_to_exploitation": "no"},
            "m6": {"re_arrest": "unknown", "return_to_exploitation": "unknown"},  # nothing known: skipped
            "m12": {"re_arrest": "no", "return_to_exploitation": "yes"},
            "m24": {"re_arrest": "yes"},
        },
        outcome_dates={
            "m3": {
                "re_arrest": start + timedelta(days=92),
                "return_to_exploitation": start + timedelta(days=95),
            },
            "m12": {
                "re_arrest": start + timedelta(days=370),
                "return_to_exploitation": start + timedelta(days=370),
            },
            "m24": {"re_arrest": start + timedelta(days=735)},
        },
    )
    first, second = recidivism_intervals(rec)
    assert (first.kind, first.event, first.families) == ("intake-m3", False, frozenset())
    assert first.end == start + timedelta(days=95)
    # The m6 follow-up established nothing, so the second interval runs from m3 to m12; therapy first
    # came after m3, so only housing counts for it. m24 comes after the first event: not used.
    assert (second.kind, second.event, second.families) == ("m3-m12", True, frozenset({"housing"}))
    assert recidivism_intervals(_record(engaged_at=None)) == []


def test_newcombe_differences_with_holm() -> None:
    groups = [
        ("recidivism", "x", "a", 30, 100),
        ("recidivism", "x", "b", 60, 100),
        ("recidivism", "x", "c", 32, 100),
    ]
    out = newcombe_comparisons(groups, {("recidivism", "x"): "a"})
    by_level = {c.level: c for c in out}
    b, c = by_level["b"], by_level["c"]
    assert b.difference == pytest.approx(0.30) and b.ci_low > 0 and b.verdict == "higher"
    assert c.ci_low < 0 < c.ci_high and c.verdict == "similar"
    # Holm: the smallest p is multiplied by the number of comparisons, and adjusted p never shrink.
    assert b.p_holm == pytest.approx(min(1.0, 2 * b.p))
    assert c.p_holm >= c.p


def test_why_not_a_continuous_time_cox_model(fit_5000: object) -> None:
    """The justification for the discrete-time model, as a check: a time-varying Cox model (lifelines'
    CoxTimeVaryingFitter) that takes the follow-up day as the event day misses planted values the
    grouped-time model recovers, because recidivism is only known to lie between two follow-ups."""
    import warnings

    import pandas as pd  # type: ignore[import-untyped]
    from lifelines import CoxTimeVaryingFitter  # type: ignore[import-untyped]

    from services.intake.evaluation.analysis import covariates
    from shared.casework import local_date

    rows = []
    for i, r in enumerate(cohort_records(plan_pilot(SEED, SOUTH, VALLEY, NOW))):
        for iv in recidivism_intervals(r):
            origin = local_date(r.engaged_at)  # type: ignore[arg-type]
            start, stop = (iv.start - origin).days, (iv.end - origin).days
            if stop > start:
                rows.append(
                    {
                        "id": i,
                        "start": start,
                        "stop": stop,
                        "event": int(iv.event),
                        **covariates(r, iv.families),
                    }
                )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cox = CoxTimeVaryingFitter().fit(
            pd.DataFrame(rows), id_col="id", event_col="event", start_col="start", stop_col="stop"
        )
    upper = cox.summary.loc["family:housing", "exp(coef) upper 95%"]
    assert upper < math.exp(PLANTED["family:housing"]), "the naive Cox model overstates housing's effect"
    housing = next(t for t in fit_5000.terms if t.term == "family:housing")  # type: ignore[attr-defined]
    assert housing.ci_low <= math.exp(PLANTED["family:housing"]) <= housing.ci_high
