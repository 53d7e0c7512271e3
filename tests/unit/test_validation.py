"""Semantic referral checks (``check_referral``, ``age_on``) and strict decoding of the request Structs."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any, get_args

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.intake.referrals.schemas import IntakeAttributes, ReferralIn
from services.intake.referrals.validation import FieldError, age_on, check_referral
from shared.codes import (
    AGENCY_ORIGINS,
    MAX_AGE,
    MIN_AGE,
    NEED_CODES,
    REFERRAL_SETTINGS,
    EducationLevel,
    PriorServices,
    SocioeconomicStatus,
)

NOW = datetime(2026, 11, 20, 18, 0, tzinfo=UTC)
TODAY = date(2026, 11, 20)


def body(**overrides: Any) -> dict[str, Any]:
    """A valid referral body as a client would send it (JSON types only)."""
    b: dict[str, Any] = {
        "youth": {
            "first_name": "Zyxwandra",
            "last_name": "Quellmorrow",
            "date_of_birth": "2010-04-01",
            "phone": "323-555-0199",
            "gender": "female",
        },
        "location": {"zip": "90011"},
        "needs": ["housing", "mental_health"],
        "language": "es",
        "urgency": "routine",
        "consent": {
            "obtained_at": "2026-11-19T10:00:00Z",
            "expires_at": "2027-11-20T00:00:00Z",
            "method": "written",
            "scope": ["case_management"],
        },
        "intake": {
            "referral_setting": "youth_shelter",
            "prior_services": "voluntary",
            "age_first_exploited": 14,
            "education_level": "some_high_school",
            "socioeconomic_status": "low",
            "prior_arrests": 2,
            "foster_care_history": True,
        },
        "notes": "free text",
    }
    b.update(overrides)
    return b


def with_(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """Copy of ``base`` (default: a valid body) with the dotted ``path`` set (or removed if value is DEL)."""
    b = copy.deepcopy(base if base is not None else body())
    *parents, last = path.split(".")
    node = b
    for p in parents:
        node = node[p]
    if value is DEL:
        del node[last]
    else:
        node[last] = value
    return b


DEL = object()


def ref(b: dict[str, Any]) -> ReferralIn:
    return msgspec.convert(b, ReferralIn)


def errors(b: dict[str, Any], now: datetime = NOW, today: date = TODAY) -> list[FieldError]:
    return check_referral(ref(b), now, today)


def fields(b: dict[str, Any], now: datetime = NOW, today: date = TODAY) -> list[str]:
    return [e.field for e in errors(b, now, today)]


def dob(d: date) -> dict[str, Any]:
    return with_("youth.date_of_birth", d.isoformat())


def test_valid_referral_has_no_errors() -> None:
    assert errors(body()) == []


def test_json_and_convert_agree() -> None:
    assert msgspec.json.decode(msgspec.json.encode(body()), type=ReferralIn) == ref(body())


# -- age_on -----------------------------------------------------------------------------------------


def _anniversary(born: date, years: int) -> date:
    """The day a person born on ``born`` turns ``years``: 29 Feb births count on 1 Mar in common years."""
    try:
        return born.replace(year=born.year + years)
    except ValueError:
        return date(born.year + years, 3, 1)


@pytest.mark.parametrize(
    ("born", "day", "age"),
    [
        (date(2010, 4, 1), date(2020, 3, 31), 9),
        (date(2010, 4, 1), date(2020, 4, 1), 10),
        (date(2010, 4, 1), date(2034, 3, 31), 23),
        (date(2010, 4, 1), date(2034, 4, 1), 24),
        (date(2010, 4, 1), date(2035, 3, 31), 24),
        (date(2010, 4, 1), date(2035, 4, 1), 25),
        # Leap-day births: a year older on 29 Feb in leap years, on 1 Mar otherwise.
        (date(2008, 2, 29), date(2018, 2, 28), 9),
        (date(2008, 2, 29), date(2018, 3, 1), 10),
        (date(2008, 2, 29), date(2028, 2, 28), 19),
        (date(2008, 2, 29), date(2028, 2, 29), 20),
        (date(2000, 2, 29), date(2025, 2, 28), 24),
        (date(2000, 2, 29), date(2025, 3, 1), 25),
        (date(2000, 2, 29), date(2024, 2, 29), 24),
        (date(2000, 2, 29), date(2024, 2, 28), 23),
        (date(2010, 12, 31), date(2011, 1, 1), 0),
        (date(2010, 1, 1), date(2010, 12, 31), 0),
        (date(2010, 1, 1), date(2010, 1, 1), 0),
    ],
)
def test_age_on_examples(born: date, day: date, age: int) -> None:
    assert age_on(born, day) == age


@settings(max_examples=200, deadline=None)
@given(st.dates(date(1950, 1, 1), date(2040, 12, 31)), st.integers(0, 60), st.integers(-400, 400))
def test_age_on_matches_anniversaries(born: date, years: int, offset: int) -> None:
    day = _anniversary(born, years) + timedelta(days=offset)
    expected = max(n for n in range(0, years + 3) if _anniversary(born, n) <= day) if day >= born else None
    if expected is not None:
        assert age_on(born, day) == expected


@settings(max_examples=100, deadline=None)
@given(st.dates(date(1950, 1, 1), date(2040, 12, 31)), st.integers(1, 40))
def test_age_on_turns_exactly_on_the_anniversary(born: date, years: int) -> None:
    day = _anniversary(born, years)
    assert age_on(born, day) == years
    assert age_on(born, day - timedelta(days=1)) == years - 1


# -- age band in check_referral ---------------------------------------------------------------------------


def _born_turning(age: int, on: date) -> date:
    """A birth date that makes someone exactly ``age`` on their birthday ``on``."""
    return on.replace(year=on.year - age)


@pytest.mark.parametrize(
    ("born", "ok"),
    [
        (_born_turning(MIN_AGE, TODAY), True),  # 10th birthday today
        (_born_turning(MIN_AGE, TODAY) + timedelta(days=1), False),  # turns 10 tomorrow: 9
        (_born_turning(9, TODAY), False),
        (_born_turning(MAX_AGE, TODAY), True),  # 24th birthday today
        (_born_turning(MAX_AGE + 1, TODAY) + timedelta(days=1), True),  # 25 tomorrow: still 24
        (_born_turning(MAX_AGE + 1, TODAY), False),  # 25th birthday today
        (_born_turning(30, TODAY), False),
        (TODAY, False),  # born today: 0
    ],
)
def test_age_band_around_birthdays(born: date, ok: bool) -> None:
    errs = errors(dob(born))
    if ok:
        assert errs == []
    else:
        assert [e.field for e in errs] == ["youth.date_of_birth"]
        assert f"{MIN_AGE}-{MAX_AGE}" in errs[0].message


@pytest.mark.parametrize(
    ("born", "today", "ok"),
    [
        (date(2008, 2, 29), date(2018, 2, 28), False),  # still 9
        (date(2008, 2, 29), date(2018, 3, 1), True),  # 10
        (date(2004, 2, 29), date(2014, 2, 28), False),
        (date(2004, 2, 29), date(2014, 3, 1), True),
        (date(2016, 2, 29), date(2026, 2, 28), False),
        (date(2000, 2, 29), date(2025, 2, 28), True),  # still 24
        (date(2000, 2, 29), date(2025, 3, 1), False),  # 25
        (date(2000, 2, 29), date(2024, 2, 29), True),  # 24 on the leap day itself
        (date(1996, 2, 29), date(2020, 2, 29), True),  # 24
        (date(1996, 2, 29), date(2021, 2, 28), True),  # still 24
        (date(1996, 2, 29), date(2021, 3, 1), False),  # 25
    ],
)
def test_age_band_for_leap_day_births(born: date, today: date, ok: bool) -> None:
    b = dob(born)
    # Consent must be valid on that day too, so that only the age is under test.
    now = datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    b = with_("consent.obtained_at", (now - timedelta(days=1)).isoformat(), b)
    b = with_("consent.expires_at", (now + timedelta(days=30)).isoformat(), b)
    assert fields(b, now, today) == ([] if ok else ["youth.date_of_birth"])


def test_date_of_birth_in_the_future() -> None:
    errs = errors(dob(TODAY + timedelta(days=1)))
    assert [(e.field, e.message) for e in errs] == [("youth.date_of_birth", "date of birth is in the future")]


# -- consent ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("consent", "expected"),
    [
        ({}, []),
        ({"obtained_at": NOW.isoformat()}, []),  # obtained this instant is not the future
        ({"obtained_at": (NOW + timedelta(seconds=1)).isoformat()}, ["consent.obtained_at"]),
        ({"expires_at": NOW.isoformat()}, ["consent.expires_at"]),  # expires now: expired
        ({"expires_at": (NOW - timedelta(days=1)).isoformat()}, ["consent.expires_at"]),
        ({"expires_at": (NOW + timedelta(seconds=1)).isoformat()}, []),
        # Expiring before it was obtained (and in the past): both problems named.
        (
            {"obtained_at": "2026-11-19T10:00:00Z", "expires_at": "2026-11-18T10:00:00Z"},
            ["consent.expires_at", "consent.expires_at"],
        ),
        ({"scope": ["research"]}, ["consent.scope", "consent.scope[0]"]),
        # The closed list (contract v1.1): an unknown scope is named by its place in the list.
        ({"scope": ["research", "case_management"]}, ["consent.scope[0]"]),
        ({"scope": ["case_management", "evaluation", "share_status_with_referrer"]}, []),
        ({"scope": ["case_management", "evaluation", "marketing"]}, ["consent.scope[2]"]),
        ({"scope": ["case_managements"]}, ["consent.scope", "consent.scope[0]"]),
        # Instants, not wall-clock strings: 05:00+14:00 on the 21st is 15:00Z on the 20th (past).
        ({"obtained_at": "2026-11-21T05:00:00+14:00"}, []),
        # 10:00-10:00 on the 20th is 20:00Z, two hours after NOW (future).
        ({"obtained_at": "2026-11-20T10:00:00-10:00"}, ["consent.obtained_at"]),
    ],
)
def test_consent_rules(consent: dict[str, Any], expected: list[str]) -> None:
    b = body()
    b["consent"].update(consent)
    assert fields(b) == expected


def test_expires_before_obtained_even_in_the_future() -> None:
    b = body()
    b["consent"].update({"obtained_at": "2026-11-19T10:00:00Z", "expires_at": "2026-11-19T09:00:00Z"})
    errs = errors(b)
    assert ("consent.expires_at", "consent must expire after it was obtained") in [
        (e.field, e.message) for e in errs
    ]


# -- location ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ({"zip": "90011"}, None),
        ({"zip": "90011-1234"}, None),
        ({"lat": 34.0, "lon": -118.3}, None),
        ({"lat": 0.0, "lon": 0.0}, None),  # zero is a coordinate, not "missing"
        ({}, ("location", "zip or lat/lon is required")),
        ({"zip": None, "lat": None, "lon": None}, ("location", "zip or lat/lon is required")),
        # Half a point: the missing coordinate is named.
        ({"lat": 34.0}, ("location.lon", "lat and lon must be given together")),
        ({"lon": -118.3}, ("location.lat", "lat and lon must be given together")),
        ({"lon": 0.0}, ("location.lat", "lat and lon must be given together")),
        ({"lat": 0.0, "lon": None}, ("location.lon", "lat and lon must be given together")),
        ({"zip": "90011", "lat": 34.0, "lon": -118.3}, ("location", "give either zip or lat/lon, not both")),
        ({"zip": "90011", "lat": 34.0}, ("location", "give either zip or lat/lon, not both")),
        ({"zip": "90011", "lon": 0.0}, ("location", "give either zip or lat/lon, not both")),
    ],
)
def test_location_shapes(location: dict[str, Any], expected: tuple[str, str] | None) -> None:
    errs = errors(body(location=location))
    if expected is None:
        assert errs == []
    else:
        assert [(e.field, e.message) for e in errs] == [expected]


# -- needs -----------------------------------------------------------------------------------------------


def test_duplicate_needs_are_refused() -> None:
    errs = errors(body(needs=["housing", "legal", "housing"]))
    assert [e.field for e in errs] == ["needs"]


def test_all_thirteen_distinct_needs_are_accepted() -> None:
    assert errors(body(needs=list(NEED_CODES))) == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.sampled_from(NEED_CODES), min_size=1, max_size=13))
def test_needs_distinctness_property(needs: list[str]) -> None:
    has_dup = len(set(needs)) != len(needs)
    assert ("needs" in fields(body(needs=needs))) == has_dup


def test_every_error_is_reported_at_once() -> None:
    b = body(location={}, needs=["housing", "housing"])
    b["youth"]["date_of_birth"] = "1990-01-01"
    b["consent"]["scope"] = ["research"]
    b["consent"]["expires_at"] = "2026-01-01T00:00:00Z"
    assert set(fields(b)) == {
        "youth.date_of_birth",
        "location",
        "needs",
        "consent.expires_at",
        "consent.scope",
        "consent.scope[0]",
    }


# -- strict decoding (services/intake/referrals/schemas.py) ------------------------------------------------------------


def decode(b: dict[str, Any]) -> ReferralIn:
    """Decode as the HTTP layer does: from JSON bytes."""
    return msgspec.json.decode(msgspec.json.encode(b), type=ReferralIn)


@pytest.mark.parametrize("where", ["", "youth", "location", "consent", "intake"])
def test_unknown_fields_rejected_at_every_level(where: str) -> None:
    b = body()
    target = b if not where else b[where]
    target["surprise"] = 1
    for convert in (decode, ref):
        with pytest.raises(msgspec.ValidationError, match="unknown field `surprise`"):
            convert(b)


def test_unknown_field_with_null_value_is_still_rejected() -> None:
    with pytest.raises(msgspec.ValidationError, match="unknown field `middle_name`"):
        decode(with_("youth.middle_name", None))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("needs", ["housing", "shelter"]),
        ("needs", ["Housing"]),
        ("needs", []),
        ("needs", [*NEED_CODES, "housing"]),  # 14 > 13
        ("urgency", "emergency"),
        ("urgency", "URGENT"),
        ("consent.method", "fax"),
        ("consent.scope", []),
        ("consent.scope", ["Case-Management"]),
        ("intake.referral_setting", "park"),
        ("intake.prior_services", "some"),
        ("intake.education_level", "phd"),
        ("intake.socioeconomic_status", "rich"),
        ("intake.age_first_exploited", 25),
        ("intake.age_first_exploited", -1),
        ("intake.prior_arrests", -1),
        ("intake.foster_care_history", "yes"),
        ("language", "EN"),
        ("language", "eng"),
        ("language", ""),
        ("youth.first_name", ""),
        ("youth.first_name", "x" * 101),
        ("youth.phone", "call me"),
        ("youth.date_of_birth", "2010-04-01T00:00:00Z"),  # a datetime is not a date
        ("youth.date_of_birth", "01/04/2010"),
        ("location", {"zip": "9001"}),
        ("location", {"zip": "900111"}),
        ("location", {"zip": 90011}),
        ("location", {"lat": 91.0, "lon": 0.0}),
        ("location", {"lat": 0.0, "lon": -180.5}),
        ("location", {"lat": True, "lon": 0.0}),
        ("notes", "x" * 10_001),
    ],
)
def test_bad_values_rejected(path: str, value: Any) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(with_(path, value))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("location", {"zip": "90011\n"}),  # `$` alone would match before a trailing newline
        ("location", {"zip": "90011-1234\n"}),
        ("location", {"zip": "\u0669\u0660\u0660\u0661\u0661"}),  # Arabic-Indic digits: `\d` would match
        ("location", {"zip": "\uff19\uff10\uff10\uff11\uff11"}),  # fullwidth digits
        ("language", "en\n"),
        ("youth.phone", "323-555-0199\n"),
        ("youth.first_name", "   "),  # present but blank
        ("consent.scope", ["case_management\n"]),
    ],
)
def test_patterns_are_anchored_and_ascii(path: str, value: Any) -> None:
    with pytest.raises(msgspec.ValidationError):
        decode(with_(path, value))


@pytest.mark.parametrize(
    "path",
    [
        "youth",
        "youth.first_name",
        "youth.date_of_birth",
        "location",
        "needs",
        "consent",
        "consent.obtained_at",
        "consent.expires_at",
        "consent.method",
        "consent.scope",
    ],
)
def test_required_fields(path: str) -> None:
    with pytest.raises(msgspec.ValidationError, match="missing required field"):
        decode(with_(path, DEL))


@pytest.mark.parametrize(
    "path", ["youth.last_name", "youth.phone", "youth.gender", "language", "urgency", "intake", "notes"]
)
def test_optional_fields(path: str) -> None:
    r = decode(with_(path, DEL))
    assert errors(with_(path, DEL)) == []
    if path == "language":
        assert r.language == "en"
    if path == "urgency":
        assert r.urgency == "routine"


@pytest.mark.parametrize("field", ["obtained_at", "expires_at"])
@pytest.mark.parametrize("value", ["2026-11-19T10:00:00", "2026-11-19 10:00:00", "2026-11-19"])
def test_consent_datetimes_must_be_tz_aware(field: str, value: str) -> None:
    with pytest.raises(msgspec.ValidationError, match=f"consent.{field}"):
        decode(with_(f"consent.{field}", value))


@pytest.mark.parametrize(
    "value", ["2026-11-19T10:00:00Z", "2026-11-19T10:00:00+00:00", "2026-11-19T02:00:00-08:00"]
)
def test_consent_datetimes_with_any_offset(value: str) -> None:
    r = decode(with_("consent.obtained_at", value))
    assert r.consent.obtained_at == datetime(2026, 11, 19, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize("need", NEED_CODES)
def test_every_need_code_decodes(need: str) -> None:
    assert decode(body(needs=[need])).needs == [need]


@pytest.mark.parametrize("setting", REFERRAL_SETTINGS)
def test_every_referral_setting_decodes(setting: str) -> None:
    assert decode(with_("intake.referral_setting", setting)).intake.referral_setting == setting  # type: ignore[union-attr]


def test_code_lists_match_the_contract() -> None:
    assert set(NEED_CODES) == {
        "housing",
        "mental_health",
        "medical",
        "substance_use",
        "legal",
        "immigration",
        "education",
        "employment",
        "basic_needs",
        "family",
        "lgbtq_affirming",
        "peer_support",
        "safety_planning",
    }
    assert len(NEED_CODES) == 13
    # The contract's partner list, plus the coordinating agency's own origins (issue 17).
    assert set(AGENCY_ORIGINS) == {"hotline", "walk_in", "self_referral"}
    assert set(REFERRAL_SETTINGS) - set(AGENCY_ORIGINS) == {
        "emergency_room",
        "hospital",
        "child_welfare",
        "juvenile_justice",
        "domestic_violence_center",
        "youth_shelter",
        "faith_community",
        "community_organization",
        "school",
        "health_clinic",
        "refugee_services",
        "legal_aid",
        "street_outreach",
        "homeless_services",
        "other",
    }
    assert set(get_args(PriorServices)) == {"none", "voluntary", "mandated"}
    assert set(get_args(EducationLevel)) == {
        "none",
        "primary",
        "some_high_school",
        "high_school",
        "some_college",
        "college",
    }
    assert set(get_args(SocioeconomicStatus)) == {"very_low", "low", "moderate", "high"}


def test_contract_example_body_decodes() -> None:
    """The example POST body from CONTRACT.md (comments removed)."""
    raw = b"""{
      "youth": {"first_name": "...", "last_name": "...", "date_of_birth": "2009-04-01", "phone": "555 0100",
                "gender": "..."},
      "location": {"zip": "90011"},
      "needs": ["housing", "mental_health"],
      "language": "es",
      "urgency": "routine",
      "consent": {"obtained_at": "2026-11-20T10:00:00Z", "expires_at": "2027-11-20T00:00:00Z",
                  "method": "written", "scope": ["case_management"]},
      "intake": {"referral_setting": "youth_shelter", "prior_services": "voluntary",
                 "age_first_exploited": 14, "education_level": "some_high_school",
                 "socioeconomic_status": "low", "prior_arrests": 2, "foster_care_history": true},
      "notes": "free text, treated as PII"
    }"""
    r = msgspec.json.decode(raw, type=ReferralIn)
    assert r.intake == IntakeAttributes(
        referral_setting="youth_shelter",
        prior_services="voluntary",
        age_first_exploited=14,
        education_level="some_high_school",
        socioeconomic_status="low",
        prior_arrests=2,
        foster_care_history=True,
    )
    assert check_referral(r, NOW, TODAY) == []
