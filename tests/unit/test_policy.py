"""Property and example tests of the pure routing policy ``services.routing.policy.choose``."""

from __future__ import annotations

import random

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from services.routing.policy import Candidate, Decision, ReferralFacts, choose
from shared.codes import NEED_CODES
from shared.decisions import Scored

REGIONS = ("south_la", "san_fernando_valley", "elsewhere")
LANGUAGES = ("en", "es", "ko", "hy")
STATUSES = ("active", "away", "inactive")
IDS = tuple(f"cm-{i:02d}" for i in range(12))

_codes = st.lists(st.sampled_from(NEED_CODES), unique=True, min_size=1, max_size=5).map(tuple)

candidate_st = st.builds(
    Candidate,
    id=st.sampled_from(IDS),
    regions=st.lists(st.sampled_from(REGIONS), unique=True, max_size=3).map(tuple),
    needs=st.lists(st.sampled_from(NEED_CODES), unique=True, max_size=6).map(tuple),
    languages=st.lists(st.sampled_from(LANGUAGES), unique=True, min_size=1, max_size=3).map(tuple),
    capacity=st.integers(0, 6),
    active_count=st.integers(0, 7),
    # Weighted towards active so that eligible candidates are common.
    status=st.sampled_from(("active", "active", "active", *STATUSES)),
)
candidates_st = st.lists(candidate_st, unique_by=lambda c: c.id, max_size=10)
facts_st = st.builds(
    ReferralFacts,
    id=st.just("ref-1"),
    region=st.sampled_from(REGIONS[:2]),
    needs=_codes,
    language=st.sampled_from(LANGUAGES),
    urgency=st.sampled_from(("routine", "urgent")),
)
PROPS = settings(max_examples=200, deadline=None)


def _eligible_oracle(ref: ReferralFacts, c: Candidate, excluded: frozenset[str]) -> bool:
    return (
        ref.region in c.regions
        and c.status == "active"
        and c.active_count < c.capacity
        and ref.language in c.languages
        and c.id not in excluded
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ReferralFacts, list[Candidate], frozenset[str]]:
    ref = draw(facts_st)
    cands = draw(candidates_st)
    # Clone some candidates under unused ids so that exact score ties (and the tie-break) are common.
    free = [i for i in IDS if i not in {c.id for c in cands}]
    if cands and free:
        for new_id in draw(st.lists(st.sampled_from(free), unique=True, max_size=3)):
            src = draw(st.sampled_from(cands))
            cands.append(msgspec.structs.replace(src, id=new_id))
        cands = draw(st.permutations(cands))
    excluded = frozenset(draw(st.lists(st.sampled_from(IDS), unique=True, max_size=4)))
    return ref, cands, excluded


def _by_id(d: Decision) -> dict[str, Scored]:
    return {s.id: s for s in d.scored}


# -- invariants (one property test checks them all, to keep the unit suite fast) ---------------------------


def _check_hard_filters(
    ref: ReferralFacts, cands: list[Candidate], excluded: frozenset[str], d: Decision
) -> None:
    by_id = {c.id: c for c in cands}
    for cid in d.ranked:
        c = by_id[cid]
        assert ref.region in c.regions, "outside the region"
        assert c.active_count < c.capacity, "over capacity"
        assert c.status == "active", "not active"
        assert cid not in excluded, "excluded"
    if d.chosen is not None:
        assert _eligible_oracle(ref, by_id[d.chosen], excluded)
    # Nothing eligible is left out either.
    assert set(d.ranked) == {c.id for c in cands if _eligible_oracle(ref, c, excluded)}
    assert len(set(d.ranked)) == len(d.ranked)


def _check_outcome(d: Decision) -> None:
    if d.ranked:
        assert d.outcome == "assigned"
        assert d.chosen == d.ranked[0], "the chosen is the top of ranked"
    else:
        assert d.outcome == "no_eligible_case_manager"
        assert d.chosen is None


def _check_order(d: Decision) -> None:
    scores = _by_id(d)
    keys = [(-scores[cid].score, cid) for cid in d.ranked]
    assert keys == sorted(keys), "best first, ties to the lower id"
    if d.chosen is not None:
        assert scores[d.chosen].score == max(scores[cid].score for cid in d.ranked)


def _check_explanation(
    ref: ReferralFacts, cands: list[Candidate], excluded: frozenset[str], d: Decision
) -> None:
    assert [s.id for s in d.scored] == [c.id for c in cands], "one Scored per candidate"
    by_id = _by_id(d)
    if d.chosen is not None:
        assert by_id[d.chosen].eligible
    for c in cands:
        s = by_id[c.id]
        assert s.eligible == _eligible_oracle(ref, c, excluded)
        assert s.reasons, f"{c.id} has no reasons"
        assert all(isinstance(r, str) and r for r in s.reasons)
        if not s.eligible:
            assert s.score == 0.0
        # Every failed filter is named, and no passed filter is.
        assert (c.id in excluded) == ("already offered this referral" in s.reasons)
        assert (ref.region not in c.regions) == ("does not serve the region" in s.reasons)
        assert (c.status != "active") == (f"is {c.status}" in s.reasons)
        assert (c.active_count >= c.capacity) == ("has no capacity left" in s.reasons)
        assert (ref.language not in c.languages) == ("does not speak the youth's language" in s.reasons)


@PROPS
@given(scenarios())
def test_decision_invariants(scenario: tuple[ReferralFacts, list[Candidate], frozenset[str]]) -> None:
    ref, cands, excluded = scenario
    d = choose(ref, cands, excluded)
    _check_hard_filters(ref, cands, excluded, d)
    _check_outcome(d)
    _check_order(d)
    _check_explanation(ref, cands, excluded, d)


@settings(max_examples=100, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_deterministic_under_shuffled_candidates(
    scenario: tuple[ReferralFacts, list[Candidate], frozenset[str]], rnd: random.Random
) -> None:
    ref, cands, excluded = scenario
    shuffled = list(cands)
    rnd.shuffle(shuffled)
    a = choose(ref, cands, excluded)
    b = choose(ref, shuffled, excluded)
    assert (a.chosen, a.outcome, a.ranked) == (b.chosen, b.outcome, b.ranked)
    # The explanation follows input order; its content must not depend on it.
    assert _by_id(a) == _by_id(b)
    # Calling twice with identical input gives an identical Decision.
    assert choose(ref, cands, excluded) == a


# -- out of area / none eligible ------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(facts_st, candidates_st, st.frozensets(st.sampled_from(IDS), max_size=3))
def test_out_of_area(ref: ReferralFacts, cands: list[Candidate], excluded: frozenset[str]) -> None:
    ref = ReferralFacts(ref.id, None, ref.needs, ref.language, ref.urgency)
    d = choose(ref, cands, excluded)
    assert d.outcome == "out_of_area"
    assert d.chosen is None
    assert d.ranked == ()


def test_out_of_area_even_when_a_candidate_could_serve_anyone() -> None:
    cand = Candidate("cm-1", ("south_la", "san_fernando_valley"), NEED_CODES, ("en",), 10, 0)
    d = choose(ReferralFacts("r", None, ("housing",)), [cand])
    assert d == Decision(None, "out_of_area", (), ())


def test_no_candidates_at_all() -> None:
    d = choose(ReferralFacts("r", "south_la", ("housing",)), [])
    assert d == Decision(None, "no_eligible_case_manager", (), ())


def test_no_eligible_candidate_keeps_the_explanation() -> None:
    cands = [
        Candidate("a", ("san_fernando_valley",), ("housing",), ("en",), 5, 0),
        Candidate("b", ("south_la",), ("housing",), ("en",), 5, 5),
        Candidate("c", ("south_la",), ("housing",), ("en",), 5, 0, status="away"),
        Candidate("d", ("south_la",), ("housing",), ("en",), 5, 0),
    ]
    d = choose(ReferralFacts("r", "south_la", ("housing",)), cands, frozenset({"d"}))
    assert d.outcome == "no_eligible_case_manager"
    assert d.chosen is None
    reasons = {s.id: s.reasons for s in d.scored}
    assert reasons == {
        "a": ("does not serve the region",),
        "b": ("has no capacity left",),
        "c": ("is away",),
        "d": ("already offered this referral",),
    }


def test_zero_capacity_is_never_eligible() -> None:
    d = choose(
        ReferralFacts("r", "south_la", ("housing",)),
        [Candidate("a", ("south_la",), ("housing",), ("en",), 0, 0)],
    )
    assert d.outcome == "no_eligible_case_manager"


# -- scoring preferences (examples) ------------------------------------------------------------------------


def _cm(
    cid: str,
    *,
    needs: tuple[str, ...] = ("housing",),
    langs: tuple[str, ...] = ("en",),
    cap: int = 10,
    active: int = 0,
) -> Candidate:
    return Candidate(cid, ("south_la",), needs, langs, cap, active)


def test_prefers_need_coverage() -> None:
    ref = ReferralFacts("r", "south_la", ("housing", "legal"))
    d = choose(ref, [_cm("a", needs=("housing",)), _cm("b", needs=("housing", "legal"))])
    assert d.chosen == "b"
    assert d.ranked == ("b", "a")


def test_prefers_the_youths_language() -> None:
    ref = ReferralFacts("r", "south_la", ("housing",), language="es")
    d = choose(ref, [_cm("a", langs=("en",)), _cm("b", langs=("en", "es"))])
    assert d.chosen == "b"


def test_prefers_lower_utilisation() -> None:
    ref = ReferralFacts("r", "south_la", ("housing",))
    d = choose(ref, [_cm("a", cap=10, active=8), _cm("b", cap=10, active=2)])
    assert d.chosen == "b"


def test_exact_tie_goes_to_lower_id() -> None:
    ref = ReferralFacts("r", "south_la", ("housing",))
    d = choose(ref, [_cm("z"), _cm("m"), _cm("a")])
    assert d.ranked == ("a", "m", "z")
    assert d.chosen == "a"


# -- metamorphic properties ---------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_excluding_the_chosen_promotes_the_runner_up(
    scenario: tuple[ReferralFacts, list[Candidate], frozenset[str]],
) -> None:
    ref, cands, excluded = scenario
    d = choose(ref, cands, excluded)
    if d.chosen is None:
        return
    again = choose(ref, cands, excluded | {d.chosen})
    assert again.ranked == d.ranked[1:]
    assert again.chosen == (d.ranked[1] if len(d.ranked) > 1 else None)


@settings(max_examples=100, deadline=None)
@given(scenarios(), candidate_st)
def test_adding_an_ineligible_candidate_changes_nothing(
    scenario: tuple[ReferralFacts, list[Candidate], frozenset[str]], extra: Candidate
) -> None:
    ref, cands, excluded = scenario
    extra = Candidate(
        "zz-new",
        extra.regions,
        extra.needs,
        extra.languages,
        extra.capacity,
        extra.active_count,
        status="inactive",
    )
    a = choose(ref, cands, excluded)
    b = choose(ref, [*cands, extra], excluded)
    assert (a.chosen, a.outcome, a.ranked) == (b.chosen, b.outcome, b.ranked)


def test_place_grants_fill_free_places_only_after_releases() -> None:
    from services.routing.policy import place_grants

    rows = {"a": (True, 2, 3), "b": (True, 3, 3), "c": (False, 0, 5), "d": (True, 0, 2), "e": (True, 4, 3)}
    counts, granted = place_grants(rows, {"a": 3, "b": 1, "c": 1, "d": 1, "e": 1}, {"b": 1, "e": 1})
    # a: one place left of three wanted; b: full, but one given back first; c: not active.
    assert granted == {"a": 1, "b": 1, "c": 0, "d": 1, "e": 0}
    # e was over capacity (a supervisor's choice): one back, still no room; never below zero.
    assert counts == {"a": (2, 3), "b": (3, 3), "c": (0, 0), "d": (0, 1), "e": (4, 3)}
    assert place_grants({"z": (True, 0, 1)}, {}, {"z": 3}) == ({"z": (0, 0)}, {"z": 0})
