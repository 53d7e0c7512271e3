"""Issue 17's pure parts: the youth-match blind indexes and score, the web form's conversion (every
refused field at once, named as the API names it), the FHIR Bundle mapping and Task status."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pytest

from services.intake.fhir.mapping import BundleInvalid, fhir_expression, parse_bundle, task_resource
from services.intake.referrals.matching import blind_tokens, name_trigrams, phone_digits, score
from services.intake.web.referral_form import parse_referral_form
from shared.codes import FHIR_TASK_STATUS, REFERRAL_STATUSES

SECRET = b"k" * 32
BORN = date(2010, 4, 1)
NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)


def _kinds(tokens: list[Any]) -> dict[str, set[bytes]]:
    out: dict[str, set[bytes]] = {}
    for t in tokens:
        out.setdefault(t.kind, set()).add(t.value)
    return out


def _compare(a: list[Any], b: list[Any]) -> Any:
    ka, kb = _kinds(a), _kinds(b)
    shared = frozenset(k for k in ka if k != "first_tri" and ka[k] & kb.get(k, set()))
    tri = len(ka.get("first_tri", set()) & kb.get("first_tri", set()))
    return score(shared, tri, len(ka.get("first_tri", ())), len(kb.get("first_tri", ())))


def test_the_same_youth_spelt_differently_matches_and_a_stranger_does_not() -> None:
    a = blind_tokens(SECRET, "Zyxwandra", "Quellmorrow", BORN, "(323) 555-0177", b"x")
    b = blind_tokens(SECRET, "Zixwandra", "Quelmorrow", BORN, "+1 323 555 0177", b"y")
    match = _compare(a, b)
    assert match is not None and {"dob", "phone", "first_name", "last_name"} <= set(match.reasons)
    # Same birth date only: not enough.
    assert _compare(a, blind_tokens(SECRET, "Bartholomew", "Ng", BORN, "626-555-0100", b"z")) is None
    # A similar first name and the birth date are; the phone alone with a similar name is not.
    assert _compare(a, blind_tokens(SECRET, "Zyxwandra", None, BORN, None, b"w")) is not None
    other_dob = blind_tokens(SECRET, "Zyxwandra", None, date(2011, 1, 1), "323-555-0177", b"v")
    assert _compare(a, other_dob) is None or "phone" in _compare(a, other_dob).reasons
    # The exact key is certain.
    assert score(frozenset({"exact"}), 0, 0, 0) is not None


def test_tokens_are_keyed_and_normalised() -> None:
    one = _kinds(blind_tokens(SECRET, "José", "Núñez", BORN, "323.555.0177", None))
    two = _kinds(blind_tokens(SECRET, "jose", "nunez", BORN, "5550177", None))
    assert one["first"] == two["first"] and one["phone"] == two["phone"] and one["last"] == two["last"]
    other_key = _kinds(blind_tokens(b"q" * 32, "José", "Núñez", BORN, "323.555.0177", None))
    assert not one["dob"] & other_key["dob"]
    assert blind_tokens(b"", "José", None, BORN, None, None) == []
    assert phone_digits("12") == "" and phone_digits("+1 (323) 555-0177") == "5550177"
    assert name_trigrams("ana") == frozenset({"  a", " an", "ana", "na "})


def _form(**overrides: str) -> dict[str, str]:
    form = {
        "youth.first_name": "Ana",
        "youth.date_of_birth": (NOW.date() - timedelta(days=16 * 365)).isoformat(),
        "location.zip": "90011",
        "consent.method": "written",
        "consent.obtained_at": "2026-11-19T10:00",
        "consent.expires_at": "2027-11-19T10:00",
        "language": "es",
        "urgency": "routine",
        "intake.referral_setting": "school",
    }
    form.update(overrides)
    return form


def test_the_form_becomes_the_api_body_with_local_times() -> None:
    result = parse_referral_form(_form(), ["case_management"], ["housing"], agency=False, now=NOW)
    assert result.errors == {} and result.body is not None
    assert result.body.consent.obtained_at.utcoffset() == timedelta(hours=-8)
    assert result.body.intake is not None and result.body.intake.referral_setting == "school"


def test_every_refused_field_is_reported_at_once() -> None:
    form = _form(
        **{
            "youth.first_name": " ",
            "youth.date_of_birth": "2020-01-01",
            "youth.phone": "call me",
            "location.zip": "",
            "consent.method": "",
            "consent.expires_at": "2026-01-01T00:00",
            "intake.age_first_exploited": "old",
            "intake.referral_setting": "hotline",
        }
    )
    result = parse_referral_form(form, ["evaluation"], [], agency=False, now=NOW)
    assert result.body is None
    assert {
        "youth.first_name",
        "youth.date_of_birth",
        "youth.phone",
        "location.zip",
        "needs",
        "consent.method",
        "consent.expires_at",
        "consent.scope",
        "intake.age_first_exploited",
        "intake.referral_setting",
    } <= set(result.errors), result.errors
    # The agency's intake must name its origin.
    agency = parse_referral_form(_form(), ["case_management"], ["housing"], agency=True, now=NOW)
    assert set(agency.errors) == {"intake.referral_setting"}


def _bundle() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:p",
                "resource": {
                    "resourceType": "Patient",
                    "name": [{"given": ["Ana"], "family": "Ruiz"}],
                    "birthDate": "2010-04-01",
                    "address": [{"postalCode": "90011"}],
                    "communication": [{"language": {"coding": [{"code": "es-MX"}]}}],
                },
            },
            {
                "fullUrl": "urn:uuid:s",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "active",
                    "intent": "order",
                    "subject": {"reference": "urn:uuid:p"},
                    "category": [{"coding": [{"system": "urn:refnet:need", "code": "housing"}]}],
                },
            },
            {
                "fullUrl": "urn:uuid:c",
                "resource": {
                    "resourceType": "Consent",
                    "status": "active",
                    "dateTime": "2026-11-19T10:00:00Z",
                    "category": [{"coding": [{"system": "urn:refnet:consent-method", "code": "verbal"}]}],
                    "provision": {
                        "period": {"end": "2027-11-19T10:00:00Z"},
                        "purpose": [{"system": "urn:refnet:consent-scope", "code": "case_management"}],
                    },
                },
            },
            {
                "fullUrl": "urn:uuid:t",
                "resource": {
                    "resourceType": "Task",
                    "status": "requested",
                    "intent": "order",
                    "identifier": [{"value": "T-1"}],
                    "focus": {"reference": "urn:uuid:s"},
                    "for": {"reference": "urn:uuid:p"},
                },
            },
        ],
    }


def test_a_bundle_maps_to_the_referral_body() -> None:
    parsed = parse_bundle(_bundle())
    assert parsed.task_identifier == "T-1"
    assert parsed.body["youth"] == {"first_name": "Ana", "last_name": "Ruiz", "date_of_birth": "2010-04-01"}
    assert parsed.body["language"] == "es" and parsed.body["needs"] == ["housing"]
    assert parsed.body["consent"]["method"] == "verbal"


def test_bundle_problems_name_their_elements() -> None:
    doc = _bundle()
    doc["entry"][3]["resource"]["focus"] = {"reference": "urn:uuid:elsewhere"}
    doc["entry"][0]["resource"]["gender"] = "f"
    with pytest.raises(BundleInvalid) as caught:
        parse_bundle(doc)
    assert {i.expression for i in caught.value.issues} == {"Task.focus.reference", "Patient.gender"}
    assert fhir_expression("consent.scope[0]") == "Consent.provision.purpose"
    assert fhir_expression("location") == "Patient.address[0].postalCode"


def test_every_status_has_a_task_status() -> None:
    assert set(FHIR_TASK_STATUS) == set(REFERRAL_STATUSES)
    row = {
        "id": "r",
        "status": "unroutable",
        "urgency": "urgent",
        "received_at": NOW,
        "updated_at": NOW,
        "unroutable_reason": "out_of_area",
    }
    task = task_resource(row, "T-1")
    assert task["status"] == "on-hold" and task["statusReason"]["coding"][0]["code"] == "out_of_area"


def test_the_forms_safe_contact_preferences_become_the_contact_object() -> None:
    fields = {
        "contact.safe_channel": "sms",
        "contact.safe_times": "after 4 pm",
        "contact.voicemail_ok": "no",
        "contact.notes": "text only",
    }
    result = parse_referral_form(_form(**fields), ["case_management"], ["housing"], agency=False, now=NOW)
    assert result.errors == {} and result.body is not None
    assert msgspec.to_builtins(result.body.contact) == {
        "safe_channel": "sms",
        "safe_times": "after 4 pm",
        "voicemail_ok": False,
        "notes": "text only",
    }
    none = parse_referral_form(_form(), ["case_management"], ["housing"], agency=False, now=NOW)
    assert none.body is not None and none.body.contact is msgspec.UNSET
    bad = parse_referral_form(
        _form(**{"contact.safe_channel": "pigeon", "contact.safe_times": "x" * 201}),
        ["case_management"],
        ["housing"],
        agency=False,
        now=NOW,
    )
    assert {"contact.safe_channel", "contact.safe_times"} <= set(bad.errors)
