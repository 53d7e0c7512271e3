"""``field_from_msgspec``: msgspec validation messages become the field paths a client sent."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest

from services.intake.core.problems import field_from_msgspec
from services.intake.referrals.schemas import ReferralIn


@pytest.mark.parametrize(
    ("message", "field", "msg"),
    [
        # Litestar validates the body as the `data` field of its signature model: `$.data` is stripped.
        (
            "Object contains unknown field `y` - at `$.data.youth`",
            "youth.y",
            "Object contains unknown field `y`",
        ),
        ("Object contains unknown field `x` - at `$.data`", "x", "Object contains unknown field `x`"),
        (
            "Object missing required field `first_name` - at `$.data.youth`",
            "youth.first_name",
            "Object missing required field `first_name`",
        ),
        (
            "Object missing required field `consent` - at `$.data`",
            "consent",
            "Object missing required field `consent`",
        ),
        ("Invalid enum value 'shelter' - at `$.data.needs[1]`", "needs[1]", "Invalid enum value 'shelter'"),
        (
            "Expected `str` of length <= 100 - at `$.data.youth.first_name`",
            "youth.first_name",
            "Expected `str` of length <= 100",
        ),
        (
            "Expected `datetime` with a timezone component - at `$.data.consent.obtained_at`",
            "consent.obtained_at",
            "Expected `datetime` with a timezone component",
        ),
        ("Expected `float` >= -90.0 - at `$.data.location.lat`", "location.lat", "Expected `float` >= -90.0"),
        ("Expected `array` of length >= 1 - at `$.data.needs`", "needs", "Expected `array` of length >= 1"),
        (
            "Expected `str`, got `int` - at `$.data.consent.scope[0]`",
            "consent.scope[0]",
            "Expected `str`, got `int`",
        ),
        # Direct msgspec decoding (no Litestar wrapper) gives the same fields.
        ("Object contains unknown field `y` - at `$.youth`", "youth.y", "Object contains unknown field `y`"),
        ("Object contains unknown field `x`", "x", "Object contains unknown field `x`"),
        ("Object missing required field `needs`", "needs", "Object missing required field `needs`"),
        ("Expected `str`, got `int` - at `$.language`", "language", "Expected `str`, got `int`"),
        # Query/path parameters of the signature model.
        ("Expected `int`, got `str` - at `$.limit`", "limit", "Expected `int`, got `str`"),
        # No location at all: the whole body is wrong.
        ("Expected `object`, got `array`", "", "Expected `object`, got `array`"),
        ("Expected `object`, got `array` - at `$.data`", "", "Expected `object`, got `array`"),
    ],
)
def test_messages_to_fields(message: str, field: str, msg: str) -> None:
    assert field_from_msgspec(message) == {"field": field, "message": msg}


@pytest.mark.parametrize(
    ("message", "field"),
    [
        # Only Litestar's `data` wrapper is stripped, not a name that merely starts with "data".
        ("Expected `bool`, got `str` - at `$.data_sharing`", "data_sharing"),
        ("Expected `bool`, got `str` - at `$.data.data_sharing`", "data_sharing"),
        ("Expected `int`, got `str` - at `$.database`", "database"),
    ],
)
def test_a_field_that_starts_with_data_is_not_truncated(message: str, field: str) -> None:
    assert field_from_msgspec(message)["field"] == field


def test_multiline_message_keeps_its_path() -> None:
    out = field_from_msgspec("Expected `str`\nmatching regex '^x$' - at `$.data.language`")
    assert out["field"] == "language"
    assert out["message"] == "Expected `str`\nmatching regex '^x$'"


# -- against the messages msgspec actually produces ----------------------------------------------------


class _Signature(msgspec.Struct):
    """Stands in for Litestar's signature model, where the request body is the field `data`."""

    data: ReferralIn


def _body() -> dict[str, Any]:
    return {
        "youth": {"first_name": "A", "date_of_birth": "2010-04-01"},
        "location": {"zip": "90011"},
        "needs": ["housing"],
        "consent": {
            "obtained_at": "2026-11-19T10:00:00Z",
            "expires_at": "2027-11-20T00:00:00Z",
            "method": "written",
            "scope": ["case_management"],
        },
    }


def _mutated(path: str, value: Any) -> dict[str, Any]:
    b = copy.deepcopy(_body())
    *parents, last = path.split(".")
    node = b
    for p in parents:
        node = node[p]
    if value is _DEL:
        del node[last]
    else:
        node[last] = value
    return b


_DEL = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("youth.y", 1, "youth.y"),
        ("surprise", True, "surprise"),
        ("intake", {"colour": "red"}, "intake.colour"),
        ("youth.first_name", _DEL, "youth.first_name"),
        ("consent", _DEL, "consent"),
        ("needs", ["housing", "shelter"], "needs[1]"),
        ("consent.obtained_at", "2026-11-19T10:00:00", "consent.obtained_at"),
        ("location", {"lat": 95.0, "lon": 0.0}, "location.lat"),
        ("youth.date_of_birth", "yesterday", "youth.date_of_birth"),
    ],
)
@pytest.mark.parametrize("wrapped", [True, False], ids=["litestar", "direct"])
def test_real_msgspec_errors(path: str, value: Any, field: str, wrapped: bool) -> None:
    doc: Any = _mutated(path, value)
    if wrapped:
        with pytest.raises(msgspec.ValidationError) as info:
            msgspec.convert({"data": doc}, _Signature)
    else:
        with pytest.raises(msgspec.ValidationError) as info:
            msgspec.json.decode(msgspec.json.encode(doc), type=ReferralIn)
    out = field_from_msgspec(str(info.value))
    assert out["field"] == field
    assert "$." not in out["message"]
    assert out["message"]
