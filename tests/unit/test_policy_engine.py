"""Property tests of the routing engine's pure parts: the policy with every hard filter, the bounded
candidate set SQL relies on, the explanation, the rules file and the youth key."""

from __future__ import annotations

import random
import unicodedata
from datetime import date
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.admin.explain import display_name, explain_automatic, explain_manual, language_name
from services.routing.policy import (
    ADULT_AGE,
    SPECIALISMS,
    Candidate,
    Decision,
    NeedStep,
    ReferralFacts,
    Weights,
    balance_weight,
    base_score,
    bucket_scores,
    choose,
    excluding_specialisms,
    matching_specialisms,
    need_mask,
    need_minimum,
    specialism_mask,
)
from services.routing.rules import RulesError, effective_rules, load_rules
from shared.codes import NEED_CODES
from shared.config import load_settings
from shared.decisions import Census, DecisionRecord, Inputs, ManualRecord
from shared.youthkey import normalise_name, youth_key, youth_key_secret

REGIONS = ("south_la", "san_fernando_valley", "elsewhere")
LANGUAGES = ("en", "es", "ko", "hy")
IDS = tuple(f"cm-{i:02d}" for i in range(16))
NAMES = {cid: f"Person {cid[-2:]}" for cid in IDS}

candidate_st = st.builds(
    Candidate,
    id=st.sampled_from(IDS),
    regions=st.lists(st.sampled_from(REGIONS), unique=True, max_size=2).map(tuple),
    needs=st.lists(st.sampled_from(NEED_CODES), unique=True, max_size=6).map(tuple),
    languages=st.lists(st.sampled_from(LANGUAGES), unique=True, min_size=1, max_size=3).map(tuple),
    capacity=st.integers(0, 8),
    active_count=st.integers(0, 9),
    status=st.sampled_from(("active", "active", "active", "away", "inactive")),
    specialisms=st.lists(st.sampled_from(SPECIALISMS), unique=True, max_size=2).map(tuple),
)
weights_st = st.builds(
    Weights,
    need_coverage=st.sampled_from((0.0, 1.0, 10.0, 3.3)),
    balance=st.sampled_from((0.0, 5.0, 0.7)),
    urgent_balance=st.sampled_from((0.0, 3.0)),
    continuity=st.sampled_from((0.0, 8.0, 2.5)),
    specialism=st.sampled_from((0.0, 2.0)),
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ReferralFacts, list[Candidate], frozenset[str], Weights]:
    cands = draw(st.lists(candidate_st, unique_by=lambda c: c.id, max_size=12))
    # Clones under fresh ids make exact score ties, and so the tie-break, common.
    free = [i for i in IDS if i not in {c.id for c in cands}]
    if cands and free:
        for new_id in draw(st.lists(st.sampled_from(free), unique=True, max_size=3)):
            cands.append(msgspec.structs.replace(draw(st.sampled_from(cands)), id=new_id))
        cands = list(draw(st.permutations(cands)))
    ref = ReferralFacts(
        id="ref-1",
        region=draw(st.sampled_from(REGIONS[:2])),
        needs=tuple(draw(st.lists(st.sampled_from(NEED_CODES), unique=True, min_size=1, max_size=4))),
        language=draw(st.sampled_from(LANGUAGES)),
        urgency=draw(st.sampled_from(("routine", "urgent"))),
        age_years=draw(st.one_of(st.none(), st.integers(10, 24))),
        previous_case_managers=frozenset(draw(st.lists(st.sampled_from(IDS), unique=True, max_size=2))),
        min_covered=draw(st.sampled_from((0, 0, 0, 1, 2))),
    )
    excluded = frozenset(draw(st.lists(st.sampled_from(IDS), unique=True, max_size=3)))
    return ref, cands, excluded, draw(weights_st)


Scenario = tuple[ReferralFacts, list[Candidate], frozenset[str], Weights]
PROPS = settings(max_examples=150, deadline=None)


def _eligible(ref: ReferralFacts, c: Candidate, excluded: frozenset[str]) -> bool:
    """An independent statement of the hard filters."""
    minor = ref.age_years is not None and ref.age_years < ADULT_AGE
    adult = ref.age_years is not None and ref.age_years >= ADULT_AGE
    return (
        c.id not in excluded
        and ref.region in c.regions
        and c.status == "active"
        and c.active_count < c.capacity
        and ref.language in c.languages
        and not (minor and "adults_18_24" in c.specialisms)
        and not (adult and "minors_only" in c.specialisms)
        and len(set(ref.needs) & set(c.needs)) >= ref.min_covered
    )


@PROPS
@given(scenarios())
def test_the_choice_passes_every_hard_filter_and_is_the_best(scenario: Scenario) -> None:
    ref, cands, excluded, w = scenario
    d = choose(ref, cands, excluded, w)
    by_id = {c.id: c for c in cands}
    eligible = {c.id for c in cands if _eligible(ref, c, excluded)}
    assert set(d.ranked) == eligible
    if d.chosen is None:
        assert not eligible
        assert d.outcome == "no_eligible_case_manager"
        return
    c = by_id[d.chosen]
    assert c.active_count < c.capacity, "never over capacity"
    assert ref.region in c.regions, "never outside the region"
    assert ref.language in c.languages, "the youth's language is respected"
    assert c.status == "active"
    assert d.chosen not in excluded
    assert not (excluding_specialisms(ref) & set(c.specialisms)), "age specialism respected"
    scores = {s.id: s.score for s in d.scored}
    best = max(scores[i] for i in eligible)
    assert scores[d.chosen] == best
    assert d.chosen == min(i for i in eligible if scores[i] == best), "ties go to the lowest id"
    assert [scores[i] for i in d.ranked] == sorted((scores[i] for i in d.ranked), reverse=True)


@PROPS
@given(scenarios(), st.randoms(use_true_random=False))
def test_deterministic(scenario: Scenario, rnd: random.Random) -> None:
    ref, cands, excluded, w = scenario
    shuffled = list(cands)
    rnd.shuffle(shuffled)
    a, b = choose(ref, cands, excluded, w), choose(ref, shuffled, excluded, w)
    assert (a.chosen, a.outcome, a.ranked) == (b.chosen, b.outcome, b.ranked)
    assert {s.id: s for s in a.scored} == {s.id: s for s in b.scored}
    assert choose(ref, cands, excluded, w) == a


@PROPS
@given(scenarios())
def test_reasons_and_parts_account_for_every_candidate(scenario: Scenario) -> None:
    ref, cands, excluded, w = scenario
    d = choose(ref, cands, excluded, w)
    for c, s in zip(cands, d.scored, strict=True):
        assert s.id == c.id
        assert s.eligible == _eligible(ref, c, excluded)
        assert s.reasons and all(s.reasons)
        if not s.eligible:
            assert s.failed and len(s.failed) == len(s.reasons) and s.score == 0.0 and s.parts is None
            assert ("language" in s.failed) == (ref.language not in c.languages)
            assert ("capacity" in s.failed) == (c.active_count >= c.capacity)
            assert ("region" in s.failed) == (ref.region not in c.regions)
        else:
            assert s.parts is not None and not s.failed
            total = s.parts.need_coverage + s.parts.specialism + s.parts.balance + s.parts.continuity
            assert total == pytest.approx(s.score)
            assert (s.parts.continuity > 0) == (c.id in ref.previous_case_managers and w.continuity > 0)
            assert s.covered == len(set(ref.needs) & set(c.needs))


def _walk_top(
    ref: ReferralFacts, cands: list[Candidate], excluded: frozenset[str], w: Weights, limit: int, page: int
) -> list[Candidate]:
    """engine.gather's selection: two walks over the eligible single-region case managers (fitting
    specialists apart) and one over those serving several regions (fitting specialists among them read
    whole), least loaded first (ties to the lower id), in growing pages, each stopping once the
    ``limit``-th best read so far (in any walk) scores strictly above what anyone unread in it could
    reach."""
    buckets = bucket_scores(ref, w)
    bal = balance_weight(ref, w)
    fits = specialism_mask(matching_specialisms(ref))
    mask = need_mask(ref.needs)
    eligible = [c for c in cands if _eligible(ref, c, excluded)]
    multi = [c for c in eligible if len(c.regions) > 1]
    single = [c for c in eligible if len(c.regions) == 1]
    full = len(ref.needs) * 2

    def score(c: Candidate) -> float:
        covered = bin(need_mask(c.needs) & mask).count("1")
        fit = bool(specialism_mask(c.specialisms) & fits)
        return base_score(buckets, bal, covered, fit, c.active_count, c.capacity)

    def walk(so_far: list[Candidate], group: list[Candidate], ceiling: float) -> list[Candidate]:
        ordered = sorted(group, key=lambda c: (c.active_count / c.capacity, c.id))
        size = page
        while True:
            read = ordered[:size]
            top = sorted([*so_far, *read], key=lambda c: (-score(c), c.id))[:limit]
            if len(read) < size:
                return top
            last = read[-1]
            if len(top) == limit:
                bound = ceiling + bal * (1.0 - last.active_count / last.capacity)
                tie_ok = bal > 0 and top[-1].id <= last.id
                if score(top[-1]) > bound or (score(top[-1]) == bound and tie_ok):
                    return top
            size *= 4

    plain = [c for c in single if not specialism_mask(c.specialisms) & fits]
    fitting = [c for c in single if specialism_mask(c.specialisms) & fits]
    top = walk([], plain, buckets[full])
    top = walk(top, fitting, buckets[full + 1])
    top = walk(top, [c for c in multi if not specialism_mask(c.specialisms) & fits], buckets[full])
    return top + [c for c in multi if specialism_mask(c.specialisms) & fits]


@PROPS
@given(scenarios(), st.integers(1, 4), st.sampled_from((1, 2, 3)))
def test_the_walk_keeps_the_exact_top(scenario: Scenario, limit: int, page: int) -> None:
    """The candidate walk (plus continuity) ranks its first ``limit`` exactly as everyone would."""
    ref, cands, excluded, w = scenario
    full = choose(ref, cands, excluded, w)
    bounded = _walk_top(ref, cands, excluded, w, limit, page)
    ids = {c.id for c in bounded}
    bounded += [c for c in cands if c.id in ref.previous_case_managers and c.id not in ids]
    part = choose(ref, bounded, excluded, w)
    assert part.ranked[:limit] == full.ranked[:limit]
    assert part.chosen == full.chosen


def _record(ref: ReferralFacts, d: Decision, excluded: frozenset[str]) -> DecisionRecord:
    by_id = {s.id: s for s in d.scored}
    ordered = tuple(by_id[i] for i in d.ranked) + tuple(s for s in d.scored if not s.eligible)
    return DecisionRecord(
        policy_version="test",
        inputs=Inputs(
            region=ref.region,
            needs=ref.needs,
            language=ref.language,
            urgency=ref.urgency,
            age_years=ref.age_years,
            excluded=tuple(sorted(excluded)),
        ),
        outcome="assigned" if d.chosen else "no_eligible_case_manager",
        chosen=d.chosen,
        candidates=ordered,
        eligible_total=len(d.ranked),
        named_all=True,
    )


@PROPS
@given(scenarios())
def test_the_explanation_matches_the_choice(scenario: Scenario) -> None:
    ref, cands, excluded, w = scenario
    cands = list({c.id: c for c in cands}.values())
    d = choose(ref, cands, excluded, w)
    record = _record(ref, d, excluded)
    # A stored record survives the JSON round trip unchanged, so what is explained is what was decided.
    assert msgspec.convert(msgspec.to_builtins(record), DecisionRecord) == record
    text = explain_automatic(record, NAMES, "South LA")
    everything = " ".join((text.summary, *text.details))
    if d.chosen is None:
        assert text.summary.startswith("No case manager in South LA could take this referral")
        assert "Offered to" not in everything
    else:
        name = NAMES[d.chosen]
        assert text.summary.startswith(f"Offered to {name}, the best match of {len(d.ranked)} eligible")
        why = next(line for line in text.details if line.startswith("Why "))
        assert why.startswith(f"Why {name}: ")
        chosen = next(s for s in d.scored if s.id == d.chosen)
        assert f"covers {chosen.covered} of {len(ref.needs)} needs" in why
        assert f"{by_id_active(cands, d.chosen)}" in why
        # Runners-up in rank order, after the chosen one.
        nxt = [line for line in text.details if line.startswith("Next best of those compared: ")]
        if len(d.ranked) > 1:
            positions = [nxt[0].index(NAMES[i] + " (") for i in d.ranked[1:4]]
            assert positions == sorted(positions)
        else:
            assert not nxt
    ineligible = [s for s in d.scored if not s.eligible]
    if ineligible:
        line = next(line for line in text.details if line.startswith("Could not take it: "))
        for s in ineligible:
            assert f"{NAMES[s.id]} (" in line
            for reason in s.reasons:
                shown = reason.replace("the youth's language", language_name(ref.language))
                assert shown in line
    for cid in excluded & {c.id for c in cands}:
        assert NAMES[cid] in everything


def by_id_active(cands: list[Candidate], cid: str) -> str:
    c = next(c for c in cands if c.id == cid)
    return f"{c.active_count} of {c.capacity} cases"


def test_explanations_of_the_other_outcomes() -> None:
    inputs = Inputs(
        region="south_la",
        needs=("housing",),
        language="ko",
        urgency="urgent",
        age_years=16,
        excluded=("cm-01", "cm-02", "cm-03"),
        offers_so_far=3,
        max_offers=3,
    )
    out = explain_automatic(
        DecisionRecord(policy_version="v", inputs=inputs, outcome="offers_exhausted"), NAMES, "x"
    )
    assert "Offered 3 times without being accepted" in out.summary
    assert "Person 01, Person 02 and Person 03" in out.summary
    area = DecisionRecord(
        policy_version="v", inputs=msgspec.structs.replace(inputs, region=None), outcome="out_of_area"
    )
    assert "outside every region" in explain_automatic(area, NAMES, "x").summary
    census = Census(
        members=5000, excluded=0, status=400, capacity=3000, language=1600, age=0, needs=0, eligible=0
    )
    big = DecisionRecord(
        policy_version="v", inputs=inputs, outcome="no_eligible_case_manager", census=census, named_all=False
    )
    lines = explain_automatic(big, NAMES, "South Los Angeles").details
    assert (
        "Of 5000 case managers serving South Los Angeles: 400 away or inactive, 3000 at full capacity and 1600 not speaking Korean."
        in lines
    )
    assert any(line.startswith("Urgent:") for line in lines)
    manual = ManualRecord(
        policy_version="v",
        case_manager_id="cm-04",
        previous_status="unroutable",
        over_capacity=True,
        active_count=13,
        capacity=12,
        speaks_language=False,
        serves_region=True,
    )
    m = explain_manual(manual, "Knows the family; interpreter arranged.", "Grace Okafor", NAMES, "ko")
    assert m.summary == "Assigned by hand to Person 04 by Grace Okafor."
    assert "Reason given: Knows the family; interpreter arranged." in m.details
    assert any("over capacity (13 of 12 cases)" in line for line in m.details)
    assert any("does not list Korean" in line for line in m.details)
    assert display_name("0a1b2c3d-aaaa", {}) == "case manager 0a1b2c3d"


def test_specialisms_filter_by_age_and_add_to_the_score() -> None:
    minor = ReferralFacts("r", "south_la", ("housing",), age_years=15)
    adult = ReferralFacts("r", "south_la", ("housing", "lgbtq_affirming"), age_years=19)
    young = Candidate("a", ("south_la",), ("housing",), ("en",), 10, 5, specialisms=("minors_only",))
    grown = Candidate("b", ("south_la",), ("housing",), ("en",), 10, 5, specialisms=("adults_18_24", "lgbtq"))
    plain = Candidate("c", ("south_la",), ("housing",), ("en",), 10, 5)
    assert choose(minor, [young, grown, plain]).ranked == ("a", "c")
    d = choose(adult, [young, grown, plain])
    assert d.ranked == ("b", "c")
    assert d.scored[0].reasons == ("works with minors only",)
    assert "specialises in LGBTQ+ youth" in d.scored[1].reasons
    assert "specialises in young adults (18-24)" in d.scored[1].reasons
    # Unknown age: no age filter, no age bonus.
    assert choose(ReferralFacts("r", "south_la", ("housing",)), [young, grown, plain]).ranked == (
        "a",
        "b",
        "c",
    )


def test_continuity_and_urgency_move_the_choice() -> None:
    roomy = Candidate("a", ("south_la",), ("housing",), ("en",), 10, 0)
    known = Candidate("b", ("south_la",), ("housing",), ("en",), 10, 6)
    ref = ReferralFacts("r", "south_la", ("housing",))
    assert choose(ref, [roomy, known]).chosen == "a"
    assert (
        choose(msgspec.structs.replace(ref, previous_case_managers=frozenset({"b"})), [roomy, known]).chosen
        == "b"
    )
    # Urgency weighs free capacity more: a near-full full-coverage case manager loses to a roomy partial one.
    full_cover = Candidate("c", ("south_la",), ("housing", "legal"), ("en",), 10, 9)
    partial = Candidate("d", ("south_la",), ("housing",), ("en",), 10, 0)
    two = ReferralFacts("r", "south_la", ("housing", "legal"))
    w = Weights(need_coverage=10.0, balance=4.0, urgent_balance=4.0)
    assert choose(two, [full_cover, partial], weights=w).chosen == "c"
    assert (
        choose(msgspec.structs.replace(two, urgency="urgent"), [full_cover, partial], weights=w).chosen == "d"
    )


def test_need_match_relaxes_step_by_step() -> None:
    steps = (NeedStep(0, 0, 2), NeedStep(3600, 600, 1), NeedStep(7200, 1200, 0))
    assert [need_minimum(steps, "routine", s) for s in (0, 3599, 3600, 7199, 7200)] == [2, 2, 1, 1, 0]
    assert [need_minimum(steps, "urgent", s) for s in (0, 600, 1200)] == [2, 1, 0]
    ref = ReferralFacts("r", "south_la", ("housing", "legal"), min_covered=1)
    none = Candidate("a", ("south_la",), ("medical",), ("en",), 10, 0)
    assert choose(ref, [none]).chosen is None
    assert choose(msgspec.structs.replace(ref, min_covered=0), [none]).chosen == "a"


def test_masks_follow_the_code_lists() -> None:
    assert need_mask(["housing"]) == 1
    assert need_mask(NEED_CODES) == 2 ** len(NEED_CODES) - 1
    assert need_mask(["housing", "housing", "unknown"]) == 1
    assert specialism_mask(SPECIALISMS) == 0b1111
    assert bucket_scores(ReferralFacts("r", "x", ("housing", "legal")), Weights()) == (
        0.0,
        2.0,
        5.0,
        7.0,
        10.0,
        12.0,
    )


def test_the_shipped_rules_file_is_valid_and_versioned() -> None:
    rules = load_rules()
    assert rules.version
    assert rules.offers.urgent_ttl_seconds < rules.offers.ttl_seconds
    assert rules.offers.max_offers >= 1
    assert rules.need_match[0].after_seconds == 0
    s = load_settings({"REFNET_OFFER_TTL_SECONDS": "600", "REFNET_URGENT_OFFER_TTL_SECONDS": "60"})
    eff = effective_rules(s)
    assert (eff.offers.ttl_seconds, eff.offers.urgent_ttl_seconds) == (600, 60)
    assert eff.weights == rules.weights


def test_a_replacement_rules_file_is_checked(tmp_path: Path) -> None:
    shipped = Path(__file__).parents[2] / "services" / "routing" / "rules.toml"
    text = shipped.read_text()
    good = tmp_path / "good.toml"
    good.write_text(
        text.replace('version = "', 'version = "local-').replace("max_offers = 3", "max_offers = 5")
    )
    rules = load_rules(str(good))
    assert rules.version.startswith("local-") and rules.offers.max_offers == 5
    for bad_text, why in (
        (text.replace("balance = 5.0", "balance = -1.0"), "balance"),
        (text.replace("[offers]", "[offers]\nsurprise = 1"), "surprise"),
        (text.replace("need_coverage = 10.0", ""), "need_coverage"),
    ):
        bad = tmp_path / f"bad-{why}.toml"
        bad.write_text(bad_text)
        with pytest.raises(RulesError, match=why):
            load_rules(str(bad))
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(str(tmp_path / "missing.toml"))


def test_youth_key_is_stable_for_the_same_youth_and_secret() -> None:
    secret = youth_key_secret("", "a-signing-key")
    born = date(2009, 4, 1)
    a = youth_key(secret, "José María", "Núñez-López", born)
    assert a is not None and len(a) == 32
    assert youth_key(secret, "  jose maria ", "NUNEZ LOPEZ", born) == a
    assert youth_key(secret, "José María", "Núñez-López", date(2009, 4, 2)) != a
    assert youth_key(secret, "José", "Núñez-López", born) != a
    assert youth_key(youth_key_secret("", "another-key"), "José María", "Núñez-López", born) != a
    assert youth_key(youth_key_secret("dedicated", "a-signing-key"), "José María", "Núñez-López", born) != a
    assert youth_key(secret, "   ", None, born) is None
    assert normalise_name("Ana-Sofía  O'Neil") == "anasofiaoneil"


@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=20))
def test_an_ascii_name_normalises_as_the_unicode_rules_say(name: str) -> None:
    # normalise_name takes a shortcut for ASCII names (a regular expression); it must agree with the
    # general rule: NFKD, letters only (Unicode category L), case-folded.
    general = "".join(
        ch for ch in unicodedata.normalize("NFKD", name) if unicodedata.category(ch).startswith("L")
    ).casefold()
    assert normalise_name(name) == general
