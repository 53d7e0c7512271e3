"""The walk that lists every offending field of a refused body (``services.intake.core.fields``)."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.core.fields import field_errors, refusal
from services.intake.referrals.schemas import ReferralIn
from services.intake.staff.schemas import CaseManagerIn
from tests.unit.test_validation import body


def test_an_empty_body_names_each_missing_required_field() -> None:
    assert field_errors({}, ReferralIn) == [
        {"field": f, "message": "is required"} for f in ("youth", "location", "needs", "consent")
    ]


def test_nested_missing_unknown_and_wrong_fields_all_at_once() -> None:
    doc = body()
    del doc["youth"]["first_name"]
    doc["youth"]["nickname"] = "Z"
    doc["location"]["zip"] = "ABCDE"
    doc["needs"] = ["housing", "teleportation", 5]
    doc["consent"]["expires_at"] = "tomorrow"
    doc["urgency"] = "asap"
    doc["intake"]["age_first_exploited"] = 30
    errors = {e["field"]: e["message"] for e in field_errors(doc, ReferralIn)}
    assert errors == {
        "youth.first_name": "is required",
        "youth.nickname": "is not a field of this request (unknown fields are refused)",
        "location.zip": "must be a US ZIP code: five digits, or ZIP+4 (e.g. 90011 or 90011-1234)",
        "needs[1]": errors["needs[1]"],
        "needs[2]": errors["needs[2]"],
        "consent.expires_at": "must be a date and time with a time zone (RFC 3339), e.g. 2026-01-31T10:00:00Z",
        "urgency": "must be one of: routine, urgent",
        "intake.age_first_exploited": "must be at most 24",
    }
    assert errors["needs[1]"].startswith("must be one of: basic_needs, education")
    assert errors["needs[2]"].startswith("must be one of:")


def test_types_lengths_and_nulls_in_words() -> None:
    doc = body()
    doc["youth"] = None
    doc["location"] = {"lat": "34.0", "lon": 200}
    doc["needs"] = []
    doc["notes"] = "x" * 10_001
    errors = {e["field"]: e["message"] for e in field_errors(doc, ReferralIn)}
    assert errors == {
        "youth": "must be a JSON object, not null",
        "location.lat": "must be a number or null, not a string",
        "location.lon": "must be at most 180",
        "needs": "must have at least 1 item",
        "notes": "must have at most 10000 characters",
    }


def test_the_body_itself_of_the_wrong_type() -> None:
    assert field_errors([1, 2], ReferralIn) == [
        {"field": "", "message": "must be a JSON object, not an array"}
    ]


def test_other_bodies_get_their_own_wording() -> None:
    errors = field_errors({"email": "not-an-email", "name": " ", "regions": "south_la"}, CaseManagerIn)
    by_field = {e["field"]: e["message"] for e in errors}
    assert by_field["email"] == "must be an email address (name@example.org)"
    assert by_field["name"].startswith("must not be blank")
    assert by_field["regions"] == "must be a JSON array, not a string"


def test_refusal_is_a_422_naming_the_first_fields() -> None:
    try:
        msgspec.convert({}, ReferralIn)
    except msgspec.ValidationError as exc:
        problem = refusal({}, ReferralIn, exc)
    assert problem.status_code == 422
    assert problem.errors is not None and len(problem.errors) == 4
    assert problem.detail == (
        "Invalid request: youth is required; location is required; needs is required; and 1 more (see errors)."
    )


_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 50), st.floats(allow_nan=False), st.text(max_size=12)
)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_whatever_msgspec_refuses_the_walk_explains(data: st.DataObject) -> None:
    # Break a valid body in a few random places: when the strict decoder refuses it, the walk names at
    # least one field; when the decoder accepts it, the walk finds nothing.
    doc: Any = copy.deepcopy(body())
    paths = [
        ("youth", "first_name"),
        ("youth", "date_of_birth"),
        ("location", "zip"),
        ("consent", "method"),
        ("consent", "scope"),
        ("intake", "prior_arrests"),
        ("language",),
        ("needs",),
        ("urgency",),
    ]
    for path in data.draw(st.lists(st.sampled_from(paths), max_size=4)):
        node = doc
        for key in path[:-1]:
            node = node[key]
        action = data.draw(st.sampled_from(["delete", "replace"]))
        if action == "delete":
            node.pop(path[-1], None)
        else:
            node[path[-1]] = data.draw(_LEAVES)
    try:
        msgspec.convert(doc, ReferralIn)
    except msgspec.ValidationError:
        assert field_errors(doc, ReferralIn)
    else:
        assert field_errors(doc, ReferralIn) == []


@pytest.mark.parametrize("value", ["90011", "90011-1234"])
def test_valid_values_raise_nothing(value: str) -> None:
    doc = body()
    doc["location"]["zip"] = value
    assert field_errors(doc, ReferralIn) == []
