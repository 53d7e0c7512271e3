"""The versioned routing rules file (weights, offer timeouts, need-match steps), loaded and validated."""

from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path
from typing import Annotated

import msgspec

from services.routing.policy import NeedStep, Weights
from shared.config import Settings

__all__ = ["Candidates", "Offers", "Rules", "RulesError", "effective_rules", "load_rules"]

_SHIPPED = "rules.toml"
Seconds = Annotated[int, msgspec.Meta(ge=1)]


class RulesError(ValueError):
    """The rules file is unreadable or invalid; the message says which and why."""


class Offers(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    ttl_seconds: Seconds = 4 * 3600
    urgent_ttl_seconds: Seconds = 3600
    max_offers: Annotated[int, msgspec.Meta(ge=1)] = 3

    def ttl_for(self, urgency: str) -> int:
        return self.urgent_ttl_seconds if urgency == "urgent" else self.ttl_seconds


class Candidates(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    limit: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    name_all_up_to: Annotated[int, msgspec.Meta(ge=0, le=500)] = 40


class _WeightsDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # Non-negative: a negative weight would invert a preference, which is never what a typo means.
    need_coverage: Annotated[float, msgspec.Meta(ge=0)]
    balance: Annotated[float, msgspec.Meta(ge=0)]
    urgent_balance: Annotated[float, msgspec.Meta(ge=0)]
    continuity: Annotated[float, msgspec.Meta(ge=0)]
    specialism: Annotated[float, msgspec.Meta(ge=0)]


class _RulesDoc(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    version: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    weights: _WeightsDoc
    offers: Offers
    candidates: Candidates = Candidates()
    need_match: tuple[NeedStep, ...] = (NeedStep(),)


class Rules(msgspec.Struct, frozen=True):
    version: str
    weights: Weights
    offers: Offers = Offers()
    candidates: Candidates = Candidates()
    need_match: tuple[NeedStep, ...] = (NeedStep(),)


def _parse(data: bytes, origin: str) -> Rules:
    try:
        doc = msgspec.toml.decode(data, type=_RulesDoc)
    except msgspec.DecodeError as exc:
        raise RulesError(f"routing rules {origin}: {exc}") from None
    return Rules(
        version=doc.version,
        weights=msgspec.convert(msgspec.to_builtins(doc.weights), Weights),
        offers=doc.offers,
        candidates=doc.candidates,
        need_match=doc.need_match,
    )


@functools.cache
def load_rules(path: str = "") -> Rules:
    """The shipped rules, or those in the file at ``path`` (parsed once per process)."""
    if not path:
        return _parse(resources.files(__package__).joinpath(_SHIPPED).read_bytes(), "(shipped)")
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise RulesError(f"routing rules {path}: cannot read: {exc.strerror}") from None
    return _parse(data, path)


def effective_rules(settings: Settings) -> Rules:
    """The rules file named by REFNET_ROUTING_RULES (or shipped), with any offer timeouts set directly."""
    rules = load_rules(settings.routing_rules)
    offers = rules.offers
    if settings.offer_ttl_seconds is not None:
        offers = msgspec.structs.replace(offers, ttl_seconds=settings.offer_ttl_seconds)
    if settings.urgent_offer_ttl_seconds is not None:
        offers = msgspec.structs.replace(offers, urgent_ttl_seconds=settings.urgent_offer_ttl_seconds)
    return msgspec.structs.replace(rules, offers=offers)
