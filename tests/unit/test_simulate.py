"""The synthetic pilot's plan: deterministic, inside the two years, in a possible order, plausible."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from refnet_dev.simulate import plan_pilot
from shared.casework import FOLLOWUPS, INTERVENTION_TYPES, MEASURE_VALUES, OUTCOME_SOURCES

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


def test_plausible_effect_housing_placement_lowers_recidivism() -> None:
    got, not_got = [0, 0], [0, 0]
    for p in plan_pilot(1, 500, 0, NOW):
        later = [m for _, point, _, m in p.outcomes if point != "intake"]
        values = [v for m in later for k, v in m.items() if k in ("re_arrest", "return_to_exploitation")]
        if not any(v in ("yes", "no") for v in values):
            continue
        group = got if any(k == "housing_placement" for _, k, _, _ in p.interventions) else not_got
        group[0] += "yes" in values
        group[1] += 1
    assert got[0] / got[1] < not_got[0] / not_got[1] - 0.1
