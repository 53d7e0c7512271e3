"""Routing decisions in words a supervisor understands: pure functions over stored decision records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec

from shared.decisions import Census, DecisionRecord, ManualRecord, Scored

__all__ = ["Explained", "display_name", "explain_automatic", "explain_manual", "language_name", "need_label"]

NEED_LABELS = {
    "housing": "housing",
    "mental_health": "mental health",
    "medical": "medical care",
    "substance_use": "substance use",
    "legal": "legal help",
    "immigration": "immigration",
    "education": "education",
    "employment": "employment",
    "basic_needs": "basic needs",
    "family": "family support",
    "lgbtq_affirming": "LGBTQ+-affirming care",
    "peer_support": "peer support",
    "safety_planning": "safety planning",
}
# ISO 639-1 codes the pilot area hears most; any other shows as its code.
LANGUAGES = {
    "en": "English",
    "es": "Spanish",
    "ko": "Korean",
    "hy": "Armenian",
    "tl": "Tagalog",
    "zh": "Chinese",
    "vi": "Vietnamese",
    "ru": "Russian",
    "fa": "Persian",
    "ar": "Arabic",
    "km": "Khmer",
    "ja": "Japanese",
    "th": "Thai",
    "pt": "Portuguese",
    "fr": "French",
    "asl": "ASL",
}
RUNNERS_UP = 3


class Explained(msgspec.Struct, frozen=True):
    summary: str
    details: tuple[str, ...]


def need_label(code: str) -> str:
    return NEED_LABELS.get(code, code.replace("_", " "))


def language_name(code: str) -> str:
    return LANGUAGES.get(code, code)


def display_name(case_manager_id: str, names: Mapping[str, str]) -> str:
    """The person's name, or a short id when the viewer may not see their staff record."""
    return names.get(case_manager_id) or f"case manager {case_manager_id[:8]}"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _why(s: Scored, inputs_needs: Sequence[str], language: str) -> str:
    """The eligible candidate's reasons, with needs and language spelled out."""
    out: list[str] = []
    for reason in s.reasons:
        if reason.startswith("covers ") and " of " in reason and inputs_needs:
            out.append(f"{reason} ({', '.join(need_label(n) for n in inputs_needs)})")
        elif reason == "speaks the youth's language":
            out.append(f"speaks {language_name(language)}")
        else:
            out.append(reason)
    return "; ".join(out)


def _not_eligible(s: Scored, language: str) -> str:
    reasons = [
        f"does not speak {language_name(language)}" if r == "does not speak the youth's language" else r
        for r in s.reasons
    ]
    return ", ".join(reasons)


def _census_sentence(c: Census, region: str, language: str) -> str:
    parts = []
    if c.status:
        parts.append(f"{c.status} away or inactive")
    if c.capacity:
        parts.append(f"{c.capacity} at full capacity")
    if c.language:
        parts.append(f"{c.language} not speaking {language_name(language)}")
    if c.age:
        parts.append(f"{c.age} working only with another age group")
    if c.excluded:
        parts.append(f"{c.excluded} already offered this referral")
    if c.needs:
        parts.append(f"{c.needs} covering too few of the needs")
    if not c.members:
        return f"No case manager serves {region}."
    head = f"Of {_plural(c.members, 'case manager')} serving {region}"
    return f"{head}: {_join(parts)}." if parts else f"{head}, {c.eligible} could take it."


def explain_automatic(record: DecisionRecord, names: Mapping[str, str], region: str) -> Explained:
    """Explain an automatic decision; ``region`` is the region's display name."""
    inputs = record.inputs
    lang = inputs.language
    if record.outcome == "out_of_area":
        return Explained(
            "The referral's location is outside every region the network serves, so no case manager was "
            "offered it; a supervisor or an administrator needs to assign it by hand.",
            (),
        )
    if record.outcome == "offers_exhausted":
        who = _join([display_name(i, names) for i in inputs.excluded])
        return Explained(
            f"Offered {_plural(inputs.offers_so_far, 'time')} without being accepted (declined or not answered "
            f"in time by {who}); a supervisor needs to assign it by hand.",
            (f"After {_plural(inputs.max_offers, 'unaccepted offer')} routing stops and asks a supervisor.",),
        )
    details: list[str] = []
    eligible = [s for s in record.candidates if s.eligible]
    ineligible = [s for s in record.candidates if not s.eligible]
    if record.outcome == "assigned" and record.chosen is not None:
        chosen = next(s for s in eligible if s.id == record.chosen)
        name = display_name(chosen.id, names)
        if record.eligible_total is None:
            summary = f"Offered to {name}, the best match among the many eligible case managers in {region}."
        else:
            summary = (
                f"Offered to {name}, the best match of "
                f"{_plural(record.eligible_total, 'eligible case manager')} in {region}."
            )
        details.append(f"Why {name}: {_why(chosen, inputs.needs, lang)}.")
        if chosen.parts is not None:
            p = chosen.parts
            terms = [f"need coverage {p.need_coverage:.2f}", f"room for new cases {p.balance:.2f}"]
            if p.continuity:
                terms.append(f"continuity {p.continuity:.2f}")
            if p.specialism:
                terms.append(f"specialism {p.specialism:.2f}")
            details.append(f"Score {chosen.score:.2f} = {' + '.join(terms)}.")
        others = [s for s in eligible if s.id != chosen.id][:RUNNERS_UP]
        if others:
            details.append(
                "Next best of those compared: "
                + "; ".join(
                    f"{display_name(s.id, names)} ({s.score:.2f}: {_why(s, (), lang)})" for s in others
                )
                + "."
            )
        if record.taken_meanwhile:
            details.append(
                f"{_join([display_name(i, names) for i in record.taken_meanwhile])} ranked higher, but another "
                "referral took their last free place at the same moment."
            )
    else:
        summary = (
            f"No case manager in {region} could take this referral; it waits in the queue and will be offered "
            "automatically as soon as someone becomes available, or a supervisor can assign it by hand."
        )
    if inputs.urgency == "urgent":
        details.append(
            "Urgent: case managers with more free capacity were preferred, and the offer is short."
        )
    if inputs.min_covered:
        details.append(
            f"At this stage a case manager had to cover at least {inputs.min_covered} of the needs "
            "(this is relaxed the longer a referral waits)."
        )
    if inputs.excluded:
        details.append(
            f"Not offered again to {_join([display_name(i, names) for i in inputs.excluded])}, who declined "
            "an earlier offer or let it expire."
        )
    if ineligible and (record.named_all or record.census is None):
        details.append(
            "Could not take it: "
            + "; ".join(f"{display_name(s.id, names)} ({_not_eligible(s, lang)})" for s in ineligible)
            + "."
        )
    if record.census is not None:
        details.append(_census_sentence(record.census, region, lang))
    return Explained(summary, tuple(details))


def explain_manual(
    record: ManualRecord, reason: str, actor: str, names: Mapping[str, str], language: str
) -> Explained:
    """Explain a supervisor's or admin's manual assignment; ``actor`` is who made it."""
    name = display_name(record.case_manager_id, names)
    details = [f"Reason given: {reason}"]
    if record.over_capacity:
        details.append(
            f"This takes {name} over capacity ({record.active_count} of {record.capacity} cases), which only a "
            "manual assignment may do."
        )
    if not record.speaks_language:
        details.append(f"{name} does not list {language_name(language)} among their languages.")
    if not record.serves_region:
        details.append(f"{name} does not normally serve the referral's region.")
    if record.cancelled_assignment:
        details.append("The offer that was open at the time was withdrawn.")
    return Explained(f"Assigned by hand to {name} by {actor}.", tuple(details))
