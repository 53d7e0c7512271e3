"""The synthetic pilot's plan: deterministic, inside the two years, in a possible order, plausible."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from refnet_dev.simulate import (
    BASELINE_HAZARD,
    PLANTED,
    cohort_records,
    intake_log_hazard,
    interval_probability,
    plan_pilot,
    simulate,
)
from services.intake.evaluation.analysis import recidivism_intervals
from shared.casework import FOLLOWUPS, INTERVENTION_TYPES, MEASURE_VALUES, OUTCOME_SOURCES, local_date

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def test_deterministic_and_sized() -> None:
    a, b = plan_pilot(7, 100, 20, NOW), plan_pilot(7, 100, 20, NOW)
    assert a == b
    assert Counter(p.region for p in a) == {"south_la": 100, "san_fernando_valley": 20}
    assert plan_pilot(8, 100, 20, NOW) != a


def test_every_moment_is_in_order_and_in_the_past() -> None:
    for p in plan_pilot(11, 100, 20, NOW):
        assert NOW - timedelta(days=731) <= p.received < NOW
        assert p.received < p.accept_at
        moments = [p.contact_at, p.close_at, p.withdraw_at, *(t for t, *_ in p.interventions)]
        moments += [t for t, *_ in p.outcomes]
        assert all(m is None or p.received < m <= NOW for m in moments)
        if p.contact_at is not None:
            assert p.accept_at < p.contact_at
            assert all(t >= p.contact_at for t, *_ in p.interventions)
            assert all(t > p.contact_at for t, *_ in p.outcomes)
        else:
            assert not p.interventions and not p.outcomes
        assert (p.close_at is None) == (p.close_reason is None)
        assert p.withdraw_at is None or (p.contact_at is None and p.close_at is None)
        assert 10 <= p.age <= 22


def test_records_use_the_closed_code_lists() -> None:
    for p in plan_pilot(3, 40, 10, NOW):
        for _, kind, _, _ in p.interventions:
            assert kind in INTERVENTION_TYPES
        points = [point for _, point, _, _ in p.outcomes]
        for _, point, source, measures in p.outcomes:
            assert point in FOLLOWUPS
            assert source in OUTCOME_SOURCES
            for measure, value in measures.items():
                assert value in MEASURE_VALUES[measure]
        # Follow-ups come in schedule order, a point at most once per source.
        assert points == sorted(points, key=FOLLOWUPS.index)


def test_plausible_effect_housing_lowers_recidivism_in_the_periods_after_it() -> None:
    got, not_got = [0, 0], [0, 0]
    for record in cohort_records(plan_pilot(1, 1500, 0, NOW)):
        for interval in recidivism_intervals(record):
            group = got if "housing" in interval.families else not_got
            group[0] += interval.event
            group[1] += 1
    assert got[1] > 50
    assert got[0] / got[1] < not_got[0] / not_got[1] - 0.1


def test_the_planted_model_is_a_pure_grouped_hazard() -> None:
    base = {
        "prior_services": "none",
        "prior_arrests": 0,
        "foster_care_history": False,
        "age_first_exploited": 15,
    }
    p0 = interval_probability(base, set(), ["m3"])
    assert p0 == pytest.approx(1 - math.exp(-BASELINE_HAZARD["m3"]))
    # Housing multiplies the hazard by exp(-1.2); two periods add their baseline hazards.
    housed = interval_probability(base, {"housing"}, ["m3"])
    assert -math.log(1 - housed) == pytest.approx(BASELINE_HAZARD["m3"] * math.exp(PLANTED["family:housing"]))
    both = interval_probability(base, set(), ["m3", "m6"])
    assert -math.log(1 - both) == pytest.approx(BASELINE_HAZARD["m3"] + BASELINE_HAZARD["m6"])
    risky = {**base, "prior_services": "mandated", "prior_arrests": 5}
    assert intake_log_hazard(risky) == pytest.approx(
        PLANTED["prior_services:mandated"] + PLANTED["prior_arrests:4+"]
    )
    # The planted effects, on the hazard scale the evaluation estimates.
    assert PLANTED["family:housing"] == -1.2 and PLANTED["family:therapy"] == -0.75
    assert PLANTED["family:mentoring"] == -0.45
    assert PLANTED["prior_services:mandated"] > 0 and PLANTED["prior_arrests:4+"] > 0


def test_cohort_records_mirror_the_plan() -> None:
    plans = plan_pilot(5, 60, 12, NOW)
    records = cohort_records(plans)
    assert len(records) == len(plans)
    for plan, rec in zip(plans, records, strict=True):
        assert rec.engaged_at == plan.contact_at and rec.region == plan.region
        assert sum(rec.interventions.values()) == len(plan.interventions)
        for kind, day in rec.intervention_dates.items():
            assert day == min(local_date(t) for t, k, _, _ in plan.interventions if k == kind)
        assert set(rec.outcomes) == {point for _, point, _, _ in plan.outcomes}
        assert rec.partner is not None


async def test_simulate_refuses_more_than_5000_youth() -> None:
    with pytest.raises(ValueError, match="5,000"):
        await simulate("http://127.0.0.1:9", {}, "postgresql://nowhere", south=4500, valley=501)
    with pytest.raises(ValueError, match="5,000"):
        await simulate("http://127.0.0.1:9", {}, "postgresql://nowhere", south=-1, valley=3)
