"""What a routing decision stores (routing_decisions.detail): written by routing, read by whoever explains it."""

from __future__ import annotations

import msgspec

__all__ = ["Census", "DecisionRecord", "Inputs", "ManualRecord", "Parts", "Scored"]


class Parts(msgspec.Struct, frozen=True):
    """The score's components, each already weighted; they add up to the score."""

    need_coverage: float
    specialism: float
    balance: float
    continuity: float


class Scored(msgspec.Struct, frozen=True):
    id: str
    eligible: bool
    score: float
    # Plain-language reasons: why not eligible, or what counted for the score.
    reasons: tuple[str, ...]
    # Machine codes of the failed hard filters, in filter order (empty when eligible).
    failed: tuple[str, ...] = ()
    parts: Parts | None = None
    covered: int = 0


class Inputs(msgspec.Struct, frozen=True, kw_only=True):
    """The referral facts the policy saw: codes and ids only, never PII."""

    region: str | None
    needs: tuple[str, ...]
    language: str
    urgency: str
    age_years: int | None
    min_covered: int = 0
    # Case managers who declined or let an earlier offer of this referral expire.
    excluded: tuple[str, ...] = ()
    # Case managers who accepted an earlier referral of the same youth.
    continuity: tuple[str, ...] = ()
    offers_so_far: int = 0
    max_offers: int = 3


class Census(msgspec.Struct, frozen=True):
    """A region's case managers counted by the first hard filter each failed (large regions only)."""

    members: int
    excluded: int
    status: int
    capacity: int
    language: int
    age: int
    needs: int
    eligible: int


class DecisionRecord(msgspec.Struct, frozen=True, kw_only=True):
    policy_version: str
    inputs: Inputs
    # assigned | no_eligible_case_manager | offers_exhausted | out_of_area
    outcome: str
    chosen: str | None = None
    # Eligible ones best first, then the ineligible the decision looked at.
    candidates: tuple[Scored, ...] = ()
    # How many case managers passed every hard filter; None when the walk stopped early (many).
    eligible_total: int | None = None
    # True when every case manager of the region is among `candidates`, so each can be named.
    named_all: bool = False
    census: Census | None = None
    # Ranked above the chosen one but another worker took their last place first.
    taken_meanwhile: tuple[str, ...] = ()


class ManualRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A supervisor's or admin's manual assignment (the reason text lives in its own column)."""

    policy_version: str
    case_manager_id: str
    previous_status: str
    over_capacity: bool
    active_count: int
    capacity: int
    speaks_language: bool
    serves_region: bool
    cancelled_assignment: str | None = None
