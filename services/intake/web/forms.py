"""Posted forms as the API bodies they stand for, converted as strictly as the API decodes a body."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from services.intake.core.fields import refusal
from services.intake.core.problems import Problem
from shared.casework import MEASURE_VALUES
from shared.codes import NEED_CODES

__all__ = [
    "CM_STATUSES",
    "CONTACT_METHODS",
    "DECLINE_REASONS",
    "body",
    "contact_body",
    "decline_reason",
    "intervention_body",
    "outcome_body",
    "profile_body",
    "refused_body",
]

T = TypeVar("T")
DECLINE_REASONS = ("capacity", "needs", "language", "conflict", "other")
CONTACT_METHODS = ("in_person", "phone", "video", "text", "other")
CM_STATUSES = ("active", "away", "inactive")


def body(kind: type[T], doc: Mapping[str, Any]) -> T:
    """``doc`` as the request body ``kind``, with the API's rules (a refusal is the same 422 Problem)."""
    try:
        return msgspec.convert(doc, kind)
    except msgspec.ValidationError as exc:
        raise refusal(doc, kind, exc) from None


def refused_body(kind: type[T], doc: Mapping[str, Any]) -> T | None:
    """``body``, or None where the API would refuse it with a 422."""
    try:
        return body(kind, doc)
    except Problem:
        return None


def _number(text: str) -> bool:
    # ASCII digits only: "²".isdigit() is true, but int("²") fails.
    return text.isascii() and text.isdigit()


def decline_reason(form: Mapping[str, str]) -> str:
    """A coded reason, with the case manager's words after it if they gave any."""
    reason = form.get("reason", "other")
    if reason not in DECLINE_REASONS:
        reason = "other"
    detail = form.get("detail", "").strip()[:900]
    return f"{reason}: {detail}" if detail else reason


def contact_body(form: Mapping[str, str]) -> dict[str, Any]:
    method = form.get("method", "")
    return {"method": method} if method in CONTACT_METHODS else {}


def intervention_body(form: Mapping[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": form.get("type", ""), "delivered_on": form.get("delivered_on", "")}
    minutes = form.get("minutes", "").strip()
    if _number(minutes) and int(minutes) > 0:
        doc["duration"] = f"PT{int(minutes)}M"
    return doc


def outcome_body(form: Mapping[str, str]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "followup": form.get("followup", ""),
        "observed_on": form.get("observed_on", ""),
        "source": form.get("source", ""),
    }
    for measure in MEASURE_VALUES:
        if form.get(measure):
            doc[measure] = form[measure]
    return doc


def profile_body(form: Mapping[str, str], *, with_identity: bool) -> dict[str, Any]:
    """A case manager profile from the roster form, in the roster API's terms."""
    doc: dict[str, Any] = {
        "capacity": int(form["capacity"]) if _number(form.get("capacity", "").strip()) else None,
        "status": form.get("status") if form.get("status") in CM_STATUSES else None,
        "needs": [n for n in NEED_CODES if form.get(f"need_{n}")] or None,
        "languages": [x.strip().lower() for x in form.get("languages", "").split(",") if x.strip()] or None,
    }
    if doc["status"] == "away":
        doc["away_until"] = form.get("away_until") or None
    if with_identity:
        doc.update(
            email=form.get("email", "").strip(),
            name=form.get("name", "").strip(),
            regions=[form["region"]] if form.get("region") else [],
        )
    return {k: v for k, v in doc.items() if v is not None}
