"""The web referral form as the API's referral body, with every field's refusal found at once.

The form posts the body's fields under their API names (``youth.first_name``, ``consent.scope``...). A
browser's date and time fields carry no zone: they are the agency's local time. The body is converted
with the API's own types and checked with the API's own rules (``check_referral``); where a field is
refused a stand-in lets the conversion go on, so one submission reports every field the API would, each
named as the API names it, and the page shows each message next to its field.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from services.intake.core.problems import invalid_body
from services.intake.referrals.schemas import ReferralIn
from services.intake.referrals.validation import check_origin, check_referral
from shared.casework import LOCAL_TZ, local_date
from shared.codes import NEED_CODES

__all__ = ["CONSENT_SCOPES", "FormResult", "error_field", "local_instant", "parse_referral_form"]

# The consent scopes the form offers (the contract's closed list); case_management is required.
CONSENT_SCOPES = ("case_management", "evaluation", "share_status_with_referrer")
_INTAKE_TEXT = ("referral_setting", "prior_services", "education_level", "socioeconomic_status")
_INTAKE_NUMBERS = ("age_first_exploited", "prior_arrests")
_MAX_ROUNDS = 40


class FormResult(msgspec.Struct):
    """The body when every field is acceptable; else the refusals by API field name."""

    body: ReferralIn | None
    errors: dict[str, str]


def _stand_ins(now: datetime) -> dict[str, Any]:
    """Acceptable values for required fields, to keep converting past a refused one (never submitted)."""
    return {
        "youth.first_name": "x",
        "youth.date_of_birth": (local_date(now) - timedelta(days=15 * 366)).isoformat(),
        "location": {"zip": "90011"},
        "needs": ["housing"],
        "consent.obtained_at": (now - timedelta(days=1)).isoformat(),
        "consent.expires_at": (now + timedelta(days=30)).isoformat(),
        "consent.method": "written",
        "consent.scope": ["case_management"],
    }


def local_instant(text: str) -> str | None:
    """A browser's datetime-local (no zone) as an aware ISO instant in the agency's time zone."""
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return text  # left for the API's conversion to refuse, named as the API names it
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=LOCAL_TZ)
    return moment.isoformat()


def _number(text: str) -> int | str | None:
    text = text.strip()
    if not text:
        return None
    return int(text) if text.isascii() and text.isdigit() else text


def _build(form: Mapping[str, str], scopes: list[str], needs: list[str]) -> dict[str, Any]:
    def text(name: str) -> str:
        return form.get(name, "").strip()

    youth: dict[str, Any] = {
        "first_name": form.get("youth.first_name", ""),
        "date_of_birth": text("youth.date_of_birth"),
    }
    for name in ("last_name", "phone", "gender"):
        if text(f"youth.{name}"):
            youth[name] = text(f"youth.{name}")
    if form.get("youth.do_not_contact"):
        youth["do_not_contact"] = True
    location: dict[str, Any] = {}
    if text("location.zip"):
        location["zip"] = text("location.zip")
    for axis in ("lat", "lon"):
        value = text(f"location.{axis}")
        if value:
            try:
                location[axis] = float(value)
            except ValueError:
                location[axis] = value
    consent: dict[str, Any] = {
        "obtained_at": local_instant(form.get("consent.obtained_at", "")),
        "expires_at": local_instant(form.get("consent.expires_at", "")),
        "method": text("consent.method"),
        "scope": scopes,
    }
    doc: dict[str, Any] = {
        "youth": youth,
        "location": location,
        "needs": needs,
        "consent": {k: v for k, v in consent.items() if v not in (None, "")},
        "language": text("language") or "en",
        "urgency": text("urgency") or "routine",
    }
    intake: dict[str, Any] = {k: text(f"intake.{k}") for k in _INTAKE_TEXT if text(f"intake.{k}")}
    for k in _INTAKE_NUMBERS:
        number = _number(form.get(f"intake.{k}", ""))
        if number is not None:
            intake[k] = number
    foster = text("intake.foster_care_history")
    if foster in ("yes", "no"):
        intake["foster_care_history"] = foster == "yes"
    if intake:
        doc["intake"] = intake
    if form.get("notes", "").strip():
        doc["notes"] = form["notes"].strip()
    # The youth's safe contact preferences (issue 18), only when any is given.
    contact: dict[str, Any] = {k: text(f"contact.{k}") for k in ("safe_channel", "safe_times", "notes")}
    contact = {k: v for k, v in contact.items() if v}
    voicemail = text("contact.voicemail_ok")
    if voicemail in ("yes", "no"):
        contact["voicemail_ok"] = voicemail == "yes"
    if contact:
        doc["contact"] = contact
    return doc


def _get(doc: dict[str, Any], path: list[str]) -> tuple[dict[str, Any], str] | None:
    node: Any = doc
    for part in path[:-1]:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return (node, path[-1]) if isinstance(node, dict) else None


def _replace(doc: dict[str, Any], field: str, stand_ins: dict[str, Any]) -> bool:
    """Put an acceptable value (or nothing, for an optional field) where ``field`` was refused."""
    base = field.split("[")[0]
    for name in (base, base.rsplit(".", 1)[0]):
        if name in stand_ins:
            found = _get(doc, name.split("."))
            if found is not None:
                found[0][found[1]] = stand_ins[name]
                return True
    found = _get(doc, base.split("."))
    if found is not None and found[1] in found[0]:
        del found[0][found[1]]
        return True
    return False


def error_field(field: str) -> str:
    """The form field a refusal belongs to (an item of a list belongs to the list)."""
    field = field.split("[")[0]
    return "location.zip" if field == "location" else field


def parse_referral_form(
    form: Mapping[str, str], scopes: list[str], needs: list[str], *, agency: bool, now: datetime | None = None
) -> FormResult:
    """Every refusal the API would give this form's body, by form field; the body when there is none."""
    now = now or datetime.now(UTC)
    stand_ins = _stand_ins(now)
    doc = _build(form, scopes, [n for n in needs if n in NEED_CODES] if needs else [])
    # Unknown need codes cannot come from the form's checkboxes; a tampered post is refused as the API would.
    if any(n not in NEED_CODES for n in needs):
        doc["needs"] = needs
    errors: dict[str, str] = {}
    body: ReferralIn | None = None
    for _ in range(_MAX_ROUNDS):
        try:
            body = msgspec.convert(doc, ReferralIn)
            break
        except msgspec.ValidationError as exc:
            problem = invalid_body(exc)
            err = (problem.errors or [{"field": "", "message": str(exc)}])[0]
            field = error_field(err["field"])
            errors.setdefault(field, err["message"])
            if not _replace(doc, err["field"], stand_ins):
                break
    if body is None:
        return FormResult(None, errors or {"": "invalid"})
    for e in [*check_referral(body, now, local_date(now)), *check_origin(body, agency=agency)]:
        errors.setdefault(error_field(e.field), e.message)
    return FormResult(None if errors else body, errors)
