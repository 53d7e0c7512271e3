"""Routing policy as a pure function: hard filters, a weighted score, a deterministic tie-break, reasons."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Literal, get_args

import msgspec

from shared.codes import NEED_CODES
from shared.decisions import Parts, Scored

__all__ = [
    "ADULT_AGE",
    "SPECIALISMS",
    "SPECIALISM_LABELS",
    "Candidate",
    "Decision",
    "NeedStep",
    "Parts",
    "ReferralFacts",
    "Scored",
    "Specialism",
    "Weights",
    "balance_weight",
    "base_score",
    "bucket_scores",
    "choose",
    "excluding_specialisms",
    "matching_specialisms",
    "need_mask",
    "need_minimum",
    "place_grants",
    "specialism_mask",
]

# Optional case manager specialisms. The order is the bit order of refnet_specialism_mask() in SQL.
Specialism = Literal["boys_young_men", "lgbtq", "minors_only", "adults_18_24"]
SPECIALISMS: tuple[str, ...] = get_args(Specialism)
SPECIALISM_LABELS = {
    "boys_young_men": "boys and young men",
    "lgbtq": "LGBTQ+ youth",
    "minors_only": "minors",
    "adults_18_24": "young adults (18-24)",
}
ADULT_AGE = 18


class Weights(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How much each part of the score counts. The shipped rules file sets these; defaults serve tests."""

    need_coverage: float = 10.0
    balance: float = 5.0
    urgent_balance: float = 3.0
    continuity: float = 8.0
    specialism: float = 2.0


class NeedStep(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """From ``after_seconds`` of waiting (``urgent_after_seconds`` if urgent), require ``min_covered`` needs."""

    after_seconds: Annotated[int, msgspec.Meta(ge=0)] = 0
    urgent_after_seconds: Annotated[int, msgspec.Meta(ge=0)] = 0
    min_covered: Annotated[int, msgspec.Meta(ge=0, le=len(NEED_CODES))] = 0


class ReferralFacts(msgspec.Struct, frozen=True):
    id: str
    region: str | None
    needs: tuple[str, ...]
    language: str = "en"
    urgency: str = "routine"
    age_years: int | None = None
    # Case managers who accepted an earlier referral of the same youth (from the pseudonymous youth key).
    previous_case_managers: frozenset[str] = frozenset()
    # How many of the needs a case manager must serve; relaxed while the referral waits (need_minimum).
    min_covered: int = 0


class Candidate(msgspec.Struct, frozen=True):
    id: str
    regions: tuple[str, ...]
    needs: tuple[str, ...]
    languages: tuple[str, ...]
    capacity: int
    active_count: int
    status: str = "active"
    specialisms: tuple[str, ...] = ()


class Decision(msgspec.Struct, frozen=True):
    chosen: str | None
    outcome: str  # "assigned" | "out_of_area" | "no_eligible_case_manager"
    ranked: tuple[str, ...]
    scored: tuple[Scored, ...]


def need_mask(needs: Iterable[str]) -> int:
    """Bit mask of need codes in NEED_CODES order, as refnet_need_mask() computes it in SQL."""
    return sum(1 << NEED_CODES.index(n) for n in set(needs) if n in NEED_CODES)


def specialism_mask(specialisms: Iterable[str]) -> int:
    return sum(1 << SPECIALISMS.index(s) for s in set(specialisms) if s in SPECIALISMS)


def _is_minor(ref: ReferralFacts) -> bool | None:
    return None if ref.age_years is None else ref.age_years < ADULT_AGE


def excluding_specialisms(ref: ReferralFacts) -> frozenset[str]:
    """Specialisms whose holders may not take this referral (an age band the youth is outside)."""
    minor = _is_minor(ref)
    if minor is None:
        return frozenset()
    return frozenset({"adults_18_24"} if minor else {"minors_only"})


def matching_specialisms(ref: ReferralFacts) -> frozenset[str]:
    """Specialisms that fit this referral and earn the specialism weight."""
    found: set[str] = set()
    minor = _is_minor(ref)
    if minor is not None:
        found.add("minors_only" if minor else "adults_18_24")
    if "lgbtq_affirming" in ref.needs:
        found.add("lgbtq")
    # boys_young_men has no referral attribute to match yet (gender is PII and not coded for routing).
    return frozenset(found)


def bucket_scores(ref: ReferralFacts, weights: Weights) -> tuple[float, ...]:
    """The score's constant part by (needs covered, specialism fits): index ``covered * 2 + fits``.

    The rest of the score is ``balance_weight * (1 - active/capacity)`` (+ continuity, found apart), so
    no case manager in a bucket can score more than its constant plus the balance weight times their
    free share. Candidate selection walks case managers least loaded first and stops on that bound.
    """
    n = len(ref.needs)
    out: list[float] = []
    for covered in range(n + 1):
        coverage = weights.need_coverage * covered / n if n else weights.need_coverage
        out.extend((coverage, coverage + weights.specialism))
    return tuple(out)


def balance_weight(ref: ReferralFacts, weights: Weights) -> float:
    # Urgent referrals lean harder towards the case manager with the most room, who can act soonest.
    return weights.balance + (weights.urgent_balance if ref.urgency == "urgent" else 0.0)


def base_score(
    buckets: Sequence[float], balance: float, covered: int, fits: bool, active_count: int, capacity: int
) -> float:
    """The score without continuity: the bucket's constant plus the balance weight times free capacity.

    The one formula both the policy and candidate selection (engine.gather) use, so they rank alike.
    """
    return buckets[covered * 2 + (1 if fits else 0)] + balance * (1.0 - active_count / capacity)


def need_minimum(steps: Sequence[NeedStep], urgency: str, waited_seconds: float) -> int:
    """The need match required after waiting this long: the last step whose time has come."""
    required = 0
    for step in steps:
        after = step.urgent_after_seconds if urgency == "urgent" else step.after_seconds
        if waited_seconds >= after:
            required = step.min_covered
    return required


_AGE_REASON = {
    "minors_only": "works with minors only",
    "adults_18_24": "works with 18-24 year olds only",
}


def _filters(
    ref: ReferralFacts, c: Candidate, excluded: frozenset[str], excluding: frozenset[str], covered: int
) -> list[tuple[str, str]]:
    failed: list[tuple[str, str]] = []
    if c.id in excluded:
        failed.append(("excluded", "already offered this referral"))
    if ref.region not in c.regions:
        failed.append(("region", "does not serve the region"))
    if c.status != "active":
        failed.append(("status", f"is {c.status}"))
    if c.active_count >= c.capacity:
        failed.append(("capacity", "has no capacity left"))
    if ref.language not in c.languages:
        failed.append(("language", "does not speak the youth's language"))
    for s in sorted(excluding.intersection(c.specialisms)):
        failed.append(("age", _AGE_REASON[s]))
    if covered < ref.min_covered:
        failed.append(("needs", f"covers fewer than {ref.min_covered} of the needs"))
    return failed


class _Context(msgspec.Struct, frozen=True):
    """What every candidate's assessment shares for one referral, computed once."""

    buckets: tuple[float, ...]
    balance: float
    fits: frozenset[str]
    excluding: frozenset[str]


def _assess(ref: ReferralFacts, c: Candidate, excluded: frozenset[str], w: Weights, ctx: _Context) -> Scored:
    covered = sum(1 for n in ref.needs if n in c.needs)
    failed = _filters(ref, c, excluded, ctx.excluding, covered)
    if failed:
        return Scored(
            c.id,
            False,
            0.0,
            tuple(reason for _, reason in failed),
            failed=tuple(code for code, _ in failed),
            covered=covered,
        )
    fits = sorted(ctx.fits.intersection(c.specialisms))
    score = base_score(ctx.buckets, ctx.balance, covered, bool(fits), c.active_count, c.capacity)
    balance = ctx.balance * (1.0 - c.active_count / c.capacity)
    continuity = w.continuity if c.id in ref.previous_case_managers else 0.0
    score += continuity
    reasons = [
        f"covers {covered} of {len(ref.needs)} needs",
        f"{c.active_count} of {c.capacity} cases",
        "speaks the youth's language",
    ]
    if continuity:
        reasons.append("worked with this youth before")
    reasons.extend(f"specialises in {SPECIALISM_LABELS[s]}" for s in fits)
    return Scored(
        c.id,
        True,
        score,
        tuple(reasons),
        parts=Parts(ctx.buckets[covered * 2], w.specialism if fits else 0.0, balance, continuity),
        covered=covered,
    )


def choose(
    ref: ReferralFacts,
    candidates: Sequence[Candidate],
    excluded: frozenset[str] = frozenset(),
    weights: Weights | None = None,
) -> Decision:
    """Rank eligible case managers best first; ties go to the lower id so the result is deterministic."""
    if ref.region is None:
        return Decision(None, "out_of_area", (), ())
    w = weights or Weights()
    ctx = _Context(
        bucket_scores(ref, w), balance_weight(ref, w), matching_specialisms(ref), excluding_specialisms(ref)
    )
    scored = tuple(_assess(ref, c, excluded, w, ctx) for c in candidates)
    eligible = sorted((s for s in scored if s.eligible), key=lambda s: (-s.score, s.id))
    ranked = tuple(s.id for s in eligible)
    if not ranked:
        return Decision(None, "no_eligible_case_manager", (), scored)
    return Decision(ranked[0], "assigned", ranked, scored)


def place_grants(
    rows: Mapping[str, tuple[bool, int, int]], wanted: Mapping[str, int], releases: Mapping[str, int]
) -> tuple[dict[str, tuple[int, int]], Counter[str]]:
    """Per case manager (active, active_count, capacity): each release gives one place back (never
    below zero, as release_capacity.sql), then up to the wanted places are taken while an active one
    has room. The (old, new) counts, and the places granted."""
    counts: dict[str, tuple[int, int]] = {}
    granted: Counter[str] = Counter()
    for cid, (active, count, capacity) in rows.items():
        after = max(count - releases.get(cid, 0), 0)
        grant = min(wanted.get(cid, 0), max(capacity - after, 0)) if active else 0
        granted[cid] = grant
        counts[cid] = (count, after + grant)
    return counts, granted
