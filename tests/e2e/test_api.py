"""The intake API's error contract over real HTTP: every bad input gets its 4xx problem+json and writes
nothing; no request a client can send produces a 500.

Runs against the module's `platform` (three service processes on a seeded demo database). Partners are
split by purpose so counts and listings in one test are not disturbed by another's referrals.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import jwt
import pytest

from tests.support.platform import Platform, referral_body, wait_for

PROBLEM_JSON = "application/problem+json"
LA = ZoneInfo("America/Los_Angeles")

# Partner indexes in the demo network (nine partners), one per concern.
MAIN, OTHER, PAGER, IDEM, QUIET = 0, 1, 2, 3, 4

# Distinctive PII used in every body this module sends; none of it may reach any service's logs.
FIRST, LAST, PHONE = "Quorvenlia", "Blathwistrop", "213-555-0147"
NOTES = "Seen near the Glimmerquay bus stop; calls after nine."


def _years_ago(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a non-leap year: the birthday falls on the 28th
        return day.replace(year=day.year - years, day=28)


def la_today() -> date:
    # The service computes ages on the agency's calendar (America/Los_Angeles), not UTC's.
    return datetime.now(LA).date()


DOB = (_years_ago(la_today(), 16) - timedelta(days=37)).isoformat()
_DELETE = object()


def body(**overrides: Any) -> dict[str, Any]:
    """A valid referral carrying this module's PII; dotted keys override nested fields (`_DELETE` removes)."""
    b = referral_body()
    b["youth"].update(first_name=FIRST, last_name=LAST, phone=PHONE, date_of_birth=DOB)
    b["notes"] = NOTES
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        node = b
        for p in parents:
            node = node[p]
        if value is _DELETE:
            del node[leaf]
        else:
            node[leaf] = value
    return b


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(r: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM_JSON, r.headers
    p: dict[str, Any] = r.json()
    assert {"type", "title", "status", "detail"} <= p.keys(), p
    assert p["status"] == status
    for member in ("type", "title", "detail"):
        assert isinstance(p[member], str), p
        assert p[member], p
    if field is not None:
        assert [e["field"] for e in p.get("errors", [])].count(field) >= 1, p
        assert all(e["message"] for e in p["errors"]), p
    return p


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=15) as c:
        yield c


@pytest.fixture(scope="module")
async def db(platform: Platform) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(platform.dsn)
    yield conn
    await conn.close()


@pytest.fixture(scope="module")
def keys(platform: Platform) -> dict[int, str]:
    return {i: platform.partner_key(i) for i in (MAIN, OTHER, PAGER, IDEM, QUIET)}


@pytest.fixture(scope="module")
def staff(platform: Platform) -> dict[str, str]:
    c = platform.creds
    return {
        "admin": platform.staff_token(c["admins"][0]),
        "evaluator": platform.staff_token(c["evaluators"][0]),
        "supervisor_sfv": platform.staff_token(
            next(s for s in c["supervisors"] if s["region"] == "san_fernando_valley")
        ),
        **{cm["id"]: platform.staff_token(cm) for cm in c["case_managers"]},
    }


_TABLES = ("referrals", "referral_pii", "referral_keys", "consents", "idempotency_keys")


async def _snapshot(db: asyncpg.Connection) -> dict[str, Any]:
    counts: dict[str, Any] = {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in _TABLES}
    # The relay deletes outbox rows once published, so count inserts by the identity sequence instead.
    seq = await db.fetchval("SELECT pg_get_serial_sequence('outbox', 'id')")
    row = await db.fetchrow(f"SELECT last_value, is_called FROM {seq}")
    assert row is not None
    counts["outbox_inserts"] = tuple(row)
    return counts


async def _settle(db: asyncpg.Connection) -> None:
    """Wait until routing has handled every referral so its outbox writes cannot overlap a check."""

    async def idle() -> bool:
        pending = await db.fetchval(
            "SELECT (SELECT count(*) FROM referrals WHERE status = 'received')"
            " + (SELECT count(*) FROM outbox)"
        )
        return bool(pending == 0)

    await wait_for(idle, timeout=20)


@asynccontextmanager
async def writes_nothing(db: asyncpg.Connection) -> AsyncIterator[None]:
    await _settle(db)
    before = await _snapshot(db)
    yield
    assert await _snapshot(db) == before


@asynccontextmanager
async def writes_one_referral(db: asyncpg.Connection, *, idempotent: bool = False) -> AsyncIterator[None]:
    await _settle(db)
    before = await _snapshot(db)
    yield
    after = await _snapshot(db)
    for t in _TABLES:
        want = 0 if t == "idempotency_keys" and not idempotent else 1
        assert after[t] - before[t] == want, (t, before, after)
    assert after["outbox_inserts"][0] > before["outbox_inserts"][0] or not before["outbox_inserts"][1]


async def post_referral(
    client: httpx.AsyncClient, key: str, payload: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await client.post("/v1/referrals", json=payload, headers={**auth(key), **(headers or {})})


# --------------------------------------------------------------------------- ops endpoints


async def test_health_ready_and_openapi(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert "/v1/referrals" in doc["paths"]
    assert "post" in doc["paths"]["/v1/referrals"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        pytest.param("GET", "/v1/nope", 404, id="unknown-path"),
        pytest.param("GET", "/favicon.ico", 404, id="unknown-root-file"),
        pytest.param("DELETE", "/v1/referrals", 405, id="delete-referrals"),
        pytest.param("PUT", "/healthz", 405, id="put-healthz"),
        pytest.param("GET", "/v1/auth/token", 405, id="get-token"),
    ],
)
async def test_routing_errors_are_problems(
    client: httpx.AsyncClient, method: str, path: str, status: int
) -> None:
    r = await client.request(method, path)
    assert_problem(r, status)


# --------------------------------------------------------------------------- authentication


def _jwt(platform: Platform, secret: str | None = None, **claims: Any) -> str:
    now = int(time.time())
    base = {
        "iss": "refnet",
        "sub": platform.creds["admins"][0]["id"],
        "role": "admin",
        "region": "",
        "iat": now,
        "exp": now + 600,
    }
    base.update(claims)
    base = {k: v for k, v in base.items() if v is not _DELETE}
    return jwt.encode(base, secret or platform.env["REFNET_SECRET_KEY"], algorithm="HS256")


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(None, id="no-header"),
        pytest.param("", id="empty"),
        pytest.param("Bearer", id="scheme-only"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic"),
        pytest.param("rnk_abc", id="no-scheme"),
        pytest.param("Bearer rnk_definitely-not-a-key", id="unknown-api-key"),
        pytest.param("Bearer rnk_", id="bare-prefix"),
        pytest.param("Bearer not.a.jwt", id="garbage-token"),
        pytest.param("Bearer eyJhbGciOiJIUzI1NiJ9", id="truncated-jwt"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/v1/referrals", id="list"),
        pytest.param("GET", f"/v1/referrals/{uuid.uuid4()}", id="read"),
        pytest.param("GET", "/v1/assignments", id="assignments"),
        pytest.param("GET", "/v1/notifications", id="notifications"),
    ],
)
async def test_bad_credentials_401(
    client: httpx.AsyncClient, method: str, path: str, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    r = await client.request(method, path, headers=headers)
    assert_problem(r, 401)
    assert r.headers["www-authenticate"].lower().startswith("bearer")


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: _jwt(p, exp=int(time.time()) - 60, iat=int(time.time()) - 3600), id="expired"),
        pytest.param(
            lambda p: _jwt(p, secret="another-secret-of-sufficient-length-0123456789"), id="wrong-secret"
        ),
        pytest.param(lambda p: _jwt(p, iss="someone-else"), id="wrong-issuer"),
        pytest.param(lambda p: _jwt(p, exp=_DELETE), id="no-exp"),
        pytest.param(
            lambda p: jwt.encode(
                {
                    "iss": "refnet",
                    "sub": p.creds["admins"][0]["id"],
                    "role": "admin",
                    "iat": int(time.time()),
                    "exp": int(time.time()) + 600,
                },
                None,  # type: ignore[arg-type]  # an unsigned token is the point
                algorithm="none",
            ),
            id="alg-none",
        ),
    ],
)
async def test_bad_staff_token_401(
    client: httpx.AsyncClient, platform: Platform, db: asyncpg.Connection, make: Any
) -> None:
    token = make(platform)
    r = await client.get("/v1/referrals", headers=auth(token))
    assert_problem(r, 401)
    async with writes_nothing(db):
        r = await post_referral(client, token, body())
    assert_problem(r, 401)


async def test_unauthenticated_bad_body_is_401_not_422(
    client: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    async with writes_nothing(db):
        r = await client.post("/v1/referrals", json={"bogus": True})
    assert_problem(r, 401)
    async with writes_nothing(db):
        r = await client.post(
            "/v1/referrals", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert_problem(r, 401)


async def test_staff_token_cannot_submit_referral(
    client: httpx.AsyncClient, staff: dict[str, str], db: asyncpg.Connection
) -> None:
    async with writes_nothing(db):
        r = await post_referral(client, staff["admin"], body())
    assert_problem(r, 403)


async def test_partner_key_cannot_use_assignments(client: httpx.AsyncClient, keys: dict[int, str]) -> None:
    r = await client.get("/v1/assignments", headers=auth(keys[MAIN]))
    assert_problem(r, 403)
    r = await client.post(f"/v1/assignments/{uuid.uuid4()}/accept", headers=auth(keys[MAIN]))
    assert_problem(r, 403)


async def test_admin_cannot_use_case_manager_assignments(
    client: httpx.AsyncClient, staff: dict[str, str]
) -> None:
    r = await client.get("/v1/assignments", headers=auth(staff["admin"]))
    assert_problem(r, 403)


async def test_evaluator_cannot_read_referrals(client: httpx.AsyncClient, staff: dict[str, str]) -> None:
    r = await client.get("/v1/referrals", headers=auth(staff["evaluator"]))
    assert_problem(r, 403)
    r = await client.get(f"/v1/referrals/{uuid.uuid4()}", headers=auth(staff["evaluator"]))
    assert_problem(r, 403)


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        pytest.param({"email": "WRONG", "password": "definitely-wrong"}, 401, id="wrong-password"),
        pytest.param({"email": "nobody@example.invalid", "password": "whatever"}, 401, id="unknown-email"),
        pytest.param({"email": "WRONG"}, 422, id="missing-password"),
        pytest.param({"email": "WRONG", "password": "x", "otp": "1"}, 422, id="unknown-field"),
        pytest.param({"email": 7, "password": "x"}, 422, id="email-not-string"),
        pytest.param([], 422, id="array-body"),
    ],
)
async def test_token_errors(client: httpx.AsyncClient, platform: Platform, payload: Any, status: int) -> None:
    if isinstance(payload, dict) and payload.get("email") == "WRONG":
        payload = {**payload, "email": platform.creds["admins"][0]["email"]}
    r = await client.post("/v1/auth/token", json=payload)
    assert_problem(r, status)


async def test_token_malformed_json_400(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/auth/token", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert_problem(r, 400)


# --------------------------------------------------------------------------- referral body validation


def _needs(n: int) -> list[str]:
    codes = [
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
    ]
    return (codes * 2)[:n]


def _age_dob(age: int, *, last_day: bool) -> str:
    """A birth date giving exactly ``age`` today in Los Angeles: its first day of that age or its last."""
    today = la_today()
    if last_day:
        return (_years_ago(today, age + 1) + timedelta(days=1)).isoformat()
    return _years_ago(today, age).isoformat()


def _iso(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


INVALID: list[Any] = [
    pytest.param({"favourite_colour": "blue"}, "favourite_colour", id="unknown-top-level-field"),
    pytest.param({"youth.middle_name": "X"}, "youth.middle_name", id="unknown-nested-field"),
    pytest.param({"intake.shoe_size": 9}, "intake.shoe_size", id="unknown-intake-field"),
    pytest.param({"location.city": "LA"}, "location.city", id="unknown-location-field"),
    pytest.param({"youth.first_name": _DELETE}, "youth.first_name", id="missing-first-name"),
    pytest.param({"youth.first_name": ""}, "youth.first_name", id="empty-first-name"),
    pytest.param({"youth.first_name": " \t "}, "youth.first_name", id="blank-first-name"),
    pytest.param({"youth.date_of_birth": _DELETE}, "youth.date_of_birth", id="missing-dob"),
    pytest.param({"youth.date_of_birth": "2010-02-30"}, "youth.date_of_birth", id="impossible-dob"),
    pytest.param({"youth.date_of_birth": "03/17/2009"}, "youth.date_of_birth", id="us-format-dob"),
    pytest.param({"youth": _DELETE}, "youth", id="missing-youth"),
    pytest.param({"location": _DELETE}, "location", id="missing-location"),
    pytest.param({"location": {}}, "location", id="empty-location"),
    pytest.param({"needs": _DELETE}, "needs", id="missing-needs"),
    pytest.param({"consent": _DELETE}, "consent", id="missing-consent"),
    pytest.param({"consent.method": _DELETE}, "consent.method", id="missing-consent-method"),
    pytest.param({"needs": []}, "needs", id="empty-needs"),
    pytest.param({"needs": ["housing", "housing"]}, "needs", id="duplicate-needs"),
    pytest.param({"needs": _needs(14)}, "needs", id="too-many-needs"),
    pytest.param({"needs": ["housing", "tutoring"]}, "needs[1]", id="bad-need-code"),
    pytest.param({"urgency": "asap"}, "urgency", id="bad-urgency"),
    pytest.param({"language": "english"}, "language", id="bad-language"),
    pytest.param({"language": "EN"}, "language", id="uppercase-language"),
    pytest.param({"language": "es\n"}, "language", id="language-trailing-newline"),
    pytest.param({"intake.referral_setting": "mall"}, "intake.referral_setting", id="bad-referral-setting"),
    pytest.param({"intake.prior_services": "some"}, "intake.prior_services", id="bad-prior-services"),
    pytest.param({"intake.education_level": "phd"}, "intake.education_level", id="bad-education-level"),
    pytest.param({"intake.socioeconomic_status": "rich"}, "intake.socioeconomic_status", id="bad-ses"),
    pytest.param(
        {"intake.age_first_exploited": 30}, "intake.age_first_exploited", id="age-first-exploited-30"
    ),
    pytest.param({"youth.date_of_birth": _age_dob(9, last_day=True)}, "youth.date_of_birth", id="age-9"),
    pytest.param({"youth.date_of_birth": _age_dob(25, last_day=False)}, "youth.date_of_birth", id="age-25"),
    pytest.param(
        {"youth.date_of_birth": (la_today() + timedelta(days=2)).isoformat()},
        "youth.date_of_birth",
        id="dob-in-future",
    ),
    pytest.param(
        {"consent.obtained_at": _iso(timedelta(hours=2))},
        "consent.obtained_at",
        id="consent-obtained-in-future",
    ),
    pytest.param(
        {"consent.obtained_at": _iso(-timedelta(days=400)), "consent.expires_at": _iso(-timedelta(days=1))},
        "consent.expires_at",
        id="consent-expired",
    ),
    pytest.param({"consent.scope": ["research"]}, "consent.scope", id="scope-without-case-management"),
    pytest.param({"consent.scope": []}, "consent.scope", id="empty-scope"),
    pytest.param({"consent.method": "telepathy"}, "consent.method", id="bad-consent-method"),
    pytest.param(
        {"consent.obtained_at": "2025-01-01T10:00:00"}, "consent.obtained_at", id="naive-obtained-at"
    ),
    pytest.param({"consent.expires_at": "2099-01-01T10:00:00"}, "consent.expires_at", id="naive-expires-at"),
    pytest.param({"consent.obtained_at": "yesterday"}, "consent.obtained_at", id="unparseable-datetime"),
    pytest.param({"location": {"zip": "90011", "lat": 34.0, "lon": -118.3}}, "location", id="zip-and-point"),
    pytest.param({"location": {"lat": 34.0}}, "location.lon", id="lat-without-lon"),
    pytest.param({"location": {"lon": -118.3}}, "location.lat", id="lon-without-lat"),
    pytest.param({"location": {"zip": "9001"}}, "location.zip", id="zip-too-short"),
    pytest.param({"location": {"zip": "9OO11"}}, "location.zip", id="zip-letters"),
    pytest.param({"location": {"zip": 90011}}, "location.zip", id="zip-number"),
    pytest.param(
        {"location": {"zip": "\uff19\uff10\uff10\uff11\uff11"}}, "location.zip", id="zip-fullwidth-digits"
    ),
    pytest.param({"location": {"zip": "90011\n"}}, "location.zip", id="zip-trailing-newline"),
    pytest.param({"location": {"lat": 91.0, "lon": -118.3}}, "location.lat", id="lat-out-of-range"),
    pytest.param({"location": {"lat": 34.0, "lon": -181}}, "location.lon", id="lon-out-of-range"),
    pytest.param({"location": {"lat": "34.0", "lon": -118.3}}, "location.lat", id="lat-string"),
    pytest.param({"location": {"lat": None, "lon": -118.3}}, "location.lat", id="lat-null"),
    pytest.param({"notes": "x" * 10_001}, "notes", id="notes-too-long"),
    pytest.param({"needs": "housing"}, "needs", id="needs-string"),
    pytest.param({"youth": [FIRST, LAST]}, "youth", id="youth-list"),
    pytest.param({"intake.prior_arrests": -1}, "intake.prior_arrests", id="prior-arrests-negative"),
    pytest.param({"intake.prior_arrests": 10**30}, "intake.prior_arrests", id="prior-arrests-huge"),
    pytest.param({"intake.prior_arrests": 1.5}, "intake.prior_arrests", id="prior-arrests-float"),
    pytest.param({"intake.foster_care_history": "yes"}, "intake.foster_care_history", id="foster-care-yes"),
    pytest.param({"intake": []}, "intake", id="intake-list"),
    pytest.param({"urgency": None}, "urgency", id="urgency-null"),
    pytest.param({"youth.phone": "call me maybe"}, "youth.phone", id="bad-phone"),
    # Exact JSON types: no lenient string-to-number/bool or number-to-datetime coercion.
    pytest.param({"intake.prior_arrests": "2"}, "intake.prior_arrests", id="prior-arrests-string"),
    pytest.param(
        {"intake.foster_care_history": "true"}, "intake.foster_care_history", id="foster-care-string"
    ),
    pytest.param({"intake.foster_care_history": 1}, "intake.foster_care_history", id="foster-care-int"),
    pytest.param({"consent.obtained_at": 1_700_000_000}, "consent.obtained_at", id="obtained-at-unix-number"),
    pytest.param({"youth.first_name": 42}, "youth.first_name", id="first-name-number"),
]


@pytest.mark.parametrize(("overrides", "field"), INVALID)
async def test_invalid_referral_422(
    client: httpx.AsyncClient,
    keys: dict[int, str],
    db: asyncpg.Connection,
    overrides: dict[str, Any],
    field: str,
) -> None:
    async with writes_nothing(db):
        r = await post_referral(client, keys[MAIN], body(**overrides))
    assert_problem(r, 422, field)


async def test_every_semantic_error_is_listed(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection
) -> None:
    payload = body(
        **{
            "youth.date_of_birth": _age_dob(9, last_day=True),
            "consent.scope": ["research"],
            "needs": ["housing", "housing"],
        }
    )
    async with writes_nothing(db):
        r = await post_referral(client, keys[MAIN], payload)
    p = assert_problem(r, 422)
    assert {e["field"] for e in p["errors"]} >= {"youth.date_of_birth", "consent.scope", "needs"}


@pytest.mark.parametrize(
    ("content", "status"),
    [
        pytest.param(b"{not json", 400, id="malformed"),
        pytest.param(b'{"youth": {"first_name": "A"', 400, id="truncated"),
        pytest.param(b"", 400, id="empty"),
        pytest.param(b'{"location": {"lat": NaN, "lon": 1}}', 400, id="nan-literal"),
        pytest.param(b"\xff\xfe{}", 400, id="not-utf8"),
        pytest.param(b'{"youth": {"first_name": "\\ud800"}}', 400, id="lone-surrogate"),
        pytest.param(b"null", 422, id="null"),
        pytest.param(b"[]", 422, id="array"),
        pytest.param(b'"referral"', 422, id="string"),
        pytest.param(b"42", 422, id="number"),
        pytest.param(b"[" * 20_000 + b"]" * 20_000, 400, id="deeply-nested"),
        pytest.param(b'{"notes": ' + b"[" * 20_000 + b"]" * 20_000 + b"}", 400, id="deeply-nested-field"),
    ],
)
async def test_non_referral_bodies(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection, content: bytes, status: int
) -> None:
    async with writes_nothing(db):
        r = await client.post(
            "/v1/referrals", content=content, headers={**auth(keys[MAIN]), "content-type": "application/json"}
        )
    assert_problem(r, status)


async def test_body_over_64_kib_413(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection
) -> None:
    big = json.dumps(body(notes="n" * (65 * 1024))).encode()
    async with writes_nothing(db):
        r = await client.post(
            "/v1/referrals", content=big, headers={**auth(keys[MAIN]), "content-type": "application/json"}
        )
    assert_problem(r, 413)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    # Without Content-Length (chunked) the limit still holds while streaming.
    async with writes_nothing(db):
        r = await client.post(
            "/v1/referrals",
            content=chunks(),
            headers={**auth(keys[MAIN]), "content-type": "application/json"},
        )
    assert_problem(r, 413)


@pytest.mark.parametrize(
    ("overrides", "status", "field"),
    [
        # Valid ISO 8601 whose offset moves it outside years 1-9999 once normalised to UTC.
        pytest.param(
            {"consent.obtained_at": "0001-01-01T00:00:00+14:00"},
            422,
            "consent.obtained_at",
            id="obtained-year-0-utc",
        ),
        pytest.param(
            {"consent.expires_at": "9999-12-31T23:59:59-12:00"},
            422,
            "consent.expires_at",
            id="expires-year-10000-utc",
        ),
        pytest.param({"youth.date_of_birth": "0001-01-01"}, 422, "youth.date_of_birth", id="dob-year-1"),
        pytest.param({"youth.date_of_birth": "9999-12-31"}, 422, "youth.date_of_birth", id="dob-year-9999"),
        # 1e400 is JSON grammar but no float: the body cannot be decoded at all.
        pytest.param({"location": {"lat": "INF", "lon": 0}}, 400, None, id="lat-1e400"),
        pytest.param({"youth.first_name": "A\u0000B"}, 201, None, id="nul-in-name"),
        pytest.param({"youth.gender": "\U0001f308" * 10}, 201, None, id="emoji-gender"),
        pytest.param({"consent.expires_at": "9999-12-31T23:59:59+00:00"}, 201, None, id="expires-year-9999"),
    ],
)
async def test_edge_values_never_500(
    client: httpx.AsyncClient,
    keys: dict[int, str],
    db: asyncpg.Connection,
    overrides: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    raw = json.dumps(body(**overrides)).replace('"INF"', "1e400").encode()
    ctx = writes_one_referral(db) if status == 201 else writes_nothing(db)
    async with ctx:
        r = await client.post(
            "/v1/referrals", content=raw, headers={**auth(keys[QUIET]), "content-type": "application/json"}
        )
    if status == 201:
        assert r.status_code == 201, r.text
    else:
        assert_problem(r, status, field)


@pytest.mark.parametrize(
    ("age", "last_day"),
    [
        pytest.param(10, False, id="tenth-birthday"),
        pytest.param(24, True, id="last-day-of-24"),
    ],
)
async def test_age_band_edges_accepted(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection, age: int, last_day: bool
) -> None:
    async with writes_one_referral(db):
        r = await post_referral(
            client, keys[QUIET], body(**{"youth.date_of_birth": _age_dob(age, last_day=last_day)})
        )
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == "application/json"
    rid = r.json()["id"]
    assert r.headers["location"] == f"/v1/referrals/{rid}"
    assert await db.fetchval("SELECT age_years FROM referrals WHERE id = $1", uuid.UUID(rid)) == age


async def test_minimal_referral_accepted(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection
) -> None:
    minimal = {
        "youth": {"first_name": FIRST, "date_of_birth": DOB},
        "location": {"lat": 33.96, "lon": -118.27},
        "needs": ["housing"],
        "consent": {
            "obtained_at": _iso(-timedelta(minutes=5)),
            "expires_at": _iso(timedelta(days=30)),
            "method": "verbal",
            "scope": ["case_management"],
        },
    }
    async with writes_one_referral(db):
        r = await post_referral(client, keys[QUIET], minimal)
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["status"] == "received"
    assert view["urgency"] == "routine"
    assert set(view) >= {"id", "status", "region", "needs", "urgency", "received_at", "updated_at"}
    assert FIRST not in r.text


# --------------------------------------------------------------------------- idempotency


async def test_idempotent_replay(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection
) -> None:
    payload = body()
    key = f"idem-{uuid.uuid4()}"
    async with writes_one_referral(db, idempotent=True):
        first = await post_referral(client, keys[IDEM], payload, {"Idempotency-Key": key})
        second = await post_referral(client, keys[IDEM], payload, {"Idempotency-Key": key})
        # Same JSON, different key order and whitespace: the same body.
        reordered = json.dumps(payload, sort_keys=True, indent=3).encode()
        third = await client.post(
            "/v1/referrals",
            content=reordered,
            headers={**auth(keys[IDEM]), "Idempotency-Key": key, "content-type": "application/json"},
        )
    assert first.status_code == 201, first.text
    for again in (second, third):
        assert again.status_code == first.status_code, again.text
        assert again.content == first.content
        assert again.headers["location"] == first.headers["location"]

    # The same key with a different body is a conflict, and writes nothing.
    async with writes_nothing(db):
        r = await post_referral(client, keys[IDEM], body(urgency="urgent"), {"Idempotency-Key": key})
    assert_problem(r, 409)

    # Keys are per partner: another partner's same key is a fresh request.
    async with writes_one_referral(db, idempotent=True):
        r = await post_referral(client, keys[QUIET], payload, {"Idempotency-Key": key})
    assert r.status_code == 201
    assert r.json()["id"] != first.json()["id"]


async def test_idempotent_concurrent_retries(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection
) -> None:
    payload = body()
    key = f"race-{uuid.uuid4()}"
    async with writes_one_referral(db, idempotent=True):
        rs = await asyncio.gather(
            *(post_referral(client, keys[IDEM], payload, {"Idempotency-Key": key}) for _ in range(6))
        )
    assert {r.status_code for r in rs} == {201}, [r.text for r in rs]
    assert len({r.content for r in rs}) == 1


async def test_idempotency_replay_of_invalid_body_still_422(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection
) -> None:
    key = f"bad-{uuid.uuid4()}"
    for _ in range(2):
        async with writes_nothing(db):
            r = await post_referral(client, keys[IDEM], body(needs=[]), {"Idempotency-Key": key})
        assert_problem(r, 422, "needs")


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("k" * 256, id="too-long"),
        pytest.param("", id="empty"),
    ],
)
async def test_bad_idempotency_key_422(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection, key: str
) -> None:
    async with writes_nothing(db):
        r = await post_referral(client, keys[IDEM], body(), {"Idempotency-Key": key})
    assert_problem(r, 422, "Idempotency-Key")


async def test_longest_idempotency_key_accepted(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection
) -> None:
    async with writes_one_referral(db, idempotent=True):
        r = await post_referral(client, keys[IDEM], body(), {"Idempotency-Key": "k" * 255})
    assert r.status_code == 201, r.text


# --------------------------------------------------------------------------- query validation and paging


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        pytest.param("status=bogus", 422, "status", id="bad-status"),
        pytest.param("limit=0", 422, "limit", id="limit-0"),
        pytest.param("limit=-1", 422, "limit", id="limit-negative"),
        pytest.param("limit=1000", 422, "limit", id="limit-1000"),
        pytest.param("limit=abc", 422, "limit", id="limit-abc"),
        pytest.param("limit=1.5", 422, "limit", id="limit-float"),
        pytest.param("limit=99999999999999999999999", 422, "limit", id="limit-huge"),
        pytest.param("cursor=garbage", 422, "cursor", id="cursor-garbage"),
        pytest.param("cursor=%F0%9F%98%80", 422, "cursor", id="cursor-emoji"),
        pytest.param("cursor=WzEsMl0", 422, "cursor", id="cursor-wrong-shape"),
        # Valid JSON of the right shape whose timestamp lies outside PostgreSQL's range once in UTC.
        pytest.param(
            "cursor=WyIwMDAxLTAxLTAxVDAwOjAwOjAwKzE0OjAwIiwiMDAwMDAwMDAtMDAwMC0wMDAwLTAwMDAtMDAwMDAwMDAwMDAwIl0",
            422,
            "cursor",
            id="cursor-year-0",
        ),
    ],
)
async def test_list_query_errors(
    client: httpx.AsyncClient, keys: dict[int, str], query: str, status: int, field: str
) -> None:
    r = await client.get(f"/v1/referrals?{query}", headers=auth(keys[MAIN]))
    assert_problem(r, status, field)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("state=bogus", id="bad-state"),
    ],
)
async def test_assignment_query_errors(
    client: httpx.AsyncClient, platform: Platform, staff: dict[str, str], query: str
) -> None:
    cm = platform.creds["case_managers"][0]["id"]
    r = await client.get(f"/v1/assignments?{query}", headers=auth(staff[cm]))
    assert_problem(r, 422, "state")


async def test_pagination(client: httpx.AsyncClient, keys: dict[int, str]) -> None:
    created = []
    for _ in range(5):
        r = await post_referral(client, keys[PAGER], body())
        assert r.status_code == 201, r.text
        created.append(r.json()["id"])
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        url = "/v1/referrals?limit=2" + (f"&cursor={cursor}" if cursor else "")
        r = await client.get(url, headers=auth(keys[PAGER]))
        assert r.status_code == 200, r.text
        page = r.json()
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= 2
        seen.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10
    assert pages == 3
    assert [v["id"] for v in seen] == list(reversed(created))
    received = [v["received_at"] for v in seen]
    assert received == sorted(received, reverse=True)
    # Filtering by a status nobody has yields an empty last page.
    r = await client.get("/v1/referrals?status=closed", headers=auth(keys[PAGER]))
    assert r.status_code == 200
    assert r.json() == {"items": [], "next_cursor": None}


# --------------------------------------------------------------------------- tenant isolation


@pytest.fixture(scope="module")
async def assigned_referral(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection
) -> dict[str, Any]:
    """A South LA referral from the MAIN partner, offered to a case manager."""
    r = await post_referral(client, keys[MAIN], body())
    assert r.status_code == 201, r.text
    rid = r.json()["id"]

    async def offered() -> Any:
        return await db.fetchval(
            "SELECT case_manager_id FROM assignments WHERE referral_id = $1 AND state = 'offered'",
            uuid.UUID(rid),
        )

    cm_id = str(await wait_for(offered))
    return {"id": rid, "case_manager_id": cm_id}


def _same_problem(a: httpx.Response, b: httpx.Response) -> None:
    pa, pb = a.json(), b.json()
    pa.pop("instance", None)
    pb.pop("instance", None)
    assert pa == pb
    assert a.headers["content-type"] == b.headers["content-type"] == PROBLEM_JSON


async def test_other_partner_gets_404(
    client: httpx.AsyncClient, keys: dict[int, str], assigned_referral: dict[str, Any]
) -> None:
    rid = assigned_referral["id"]
    r = await client.get(f"/v1/referrals/{rid}", headers=auth(keys[MAIN]))
    assert r.status_code == 200
    theirs = await client.get(f"/v1/referrals/{rid}", headers=auth(keys[OTHER]))
    assert_problem(theirs, 404)
    missing = await client.get(f"/v1/referrals/{uuid.uuid4()}", headers=auth(keys[OTHER]))
    assert_problem(missing, 404)
    _same_problem(theirs, missing)
    # A non-uuid id, or the same uuid spelt differently, is just as unknown to another partner.
    for bad in ("not-a-uuid", "1", "%20", rid.upper().replace("-", ""), "x" * 300):
        assert_problem(await client.get(f"/v1/referrals/{bad}", headers=auth(keys[OTHER])), 404)
    assert_problem(await client.get("/v1/referrals/not-a-uuid", headers=auth(keys[MAIN])), 404)


async def test_other_partner_list_excludes_referral(
    client: httpx.AsyncClient, keys: dict[int, str], assigned_referral: dict[str, Any]
) -> None:
    r = await client.get("/v1/referrals?limit=100", headers=auth(keys[OTHER]))
    assert r.status_code == 200
    assert assigned_referral["id"] not in {v["id"] for v in r.json()["items"]}
    mine = await client.get("/v1/referrals?limit=100", headers=auth(keys[MAIN]))
    assert assigned_referral["id"] in {v["id"] for v in mine.json()["items"]}


async def test_case_manager_not_offered_gets_404(
    client: httpx.AsyncClient, platform: Platform, staff: dict[str, str], assigned_referral: dict[str, Any]
) -> None:
    rid, offered_to = assigned_referral["id"], assigned_referral["case_manager_id"]
    r = await client.get(f"/v1/referrals/{rid}", headers=auth(staff[offered_to]))
    assert r.status_code == 200, r.text
    r = await client.get("/v1/assignments?state=offered", headers=auth(staff[offered_to]))
    offer = next(o for o in r.json()["items"] if o["referral_id"] == rid)
    # The first few others, whichever region they serve.
    others = [cm["id"] for cm in platform.creds["case_managers"] if cm["id"] != offered_to][:3]
    for cm in others:
        r = await client.get(f"/v1/referrals/{rid}", headers=auth(staff[cm]))
        assert_problem(r, 404)
        r = await client.get("/v1/referrals?limit=100", headers=auth(staff[cm]))
        assert rid not in {v["id"] for v in r.json()["items"]}
        # Nor may they answer an offer that is not theirs, or even learn that it exists.
        r = await client.post(f"/v1/assignments/{offer['id']}/accept", headers=auth(staff[cm]))
        assert_problem(r, 404)


async def test_other_region_supervisor_gets_404(
    client: httpx.AsyncClient, staff: dict[str, str], assigned_referral: dict[str, Any]
) -> None:
    r = await client.get(f"/v1/referrals/{assigned_referral['id']}", headers=auth(staff["supervisor_sfv"]))
    assert_problem(r, 404)
    r = await client.get(f"/v1/referrals/{assigned_referral['id']}", headers=auth(staff["admin"]))
    assert r.status_code == 200


async def test_status_view_has_no_pii(
    client: httpx.AsyncClient, keys: dict[int, str], assigned_referral: dict[str, Any]
) -> None:
    r = await client.get(f"/v1/referrals/{assigned_referral['id']}", headers=auth(keys[MAIN]))
    for secret in (FIRST, LAST, PHONE, DOB, NOTES):
        assert secret not in r.text


# --------------------------------------------------------------------------- odd requests elsewhere


def _cm(platform: Platform, staff: dict[str, str]) -> dict[str, str]:
    return auth(staff[platform.creds["case_managers"][0]["id"]])


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "statuses"),
    [
        pytest.param(
            "POST",
            "/v1/referrals",
            {"content": b"needs=housing", "headers": {"content-type": "application/x-www-form-urlencoded"}},
            {415},
            id="form-body",
        ),
        pytest.param(
            "POST",
            "/v1/referrals",
            {"content": b"hello", "headers": {"content-type": "text/plain"}},
            {415},
            id="text-body",
        ),
        pytest.param("GET", "/v1/referrals?limit=1&limit=2", {}, {200, 422}, id="repeated-limit"),
        pytest.param("GET", "/v1/referrals?status=", {}, {422}, id="empty-status"),
        pytest.param("GET", "/v1/referrals?cursor=", {}, {200, 422}, id="empty-cursor"),
    ],
)
async def test_odd_partner_requests(
    client: httpx.AsyncClient,
    keys: dict[int, str],
    db: asyncpg.Connection,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    statuses: set[int],
) -> None:
    headers = {**auth(keys[QUIET]), **kwargs.get("headers", {})}
    async with writes_nothing(db):
        r = await client.request(method, path, content=kwargs.get("content"), headers=headers)
    assert r.status_code in statuses, r.text
    if r.status_code >= 400:
        assert_problem(r, r.status_code)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        pytest.param(
            "POST", f"/v1/assignments/{uuid.uuid4()}/decline", {"json": {}}, 422, id="decline-no-reason"
        ),
        pytest.param(
            "POST",
            f"/v1/assignments/{uuid.uuid4()}/decline",
            {"json": {"reason": ""}},
            422,
            id="decline-empty-reason",
        ),
        pytest.param(
            "POST",
            f"/v1/assignments/{uuid.uuid4()}/decline",
            {"content": b"{", "headers": {"content-type": "application/json"}},
            400,
            id="decline-malformed",
        ),
        pytest.param(
            "POST",
            f"/v1/assignments/{uuid.uuid4()}/decline",
            {"json": {"reason": "x"}},
            404,
            id="decline-unknown",
        ),
        pytest.param("POST", "/v1/assignments/not-a-uuid/accept", {}, 404, id="accept-not-uuid"),
        pytest.param("GET", "/v1/notifications?limit=0", {}, 422, id="notifications-limit-0"),
        pytest.param("GET", "/v1/notifications?unread=maybe", {}, 422, id="notifications-unread-maybe"),
        pytest.param("POST", "/v1/notifications/123456789/read", {}, 404, id="read-unknown-notification"),
        pytest.param("POST", "/v1/notifications/-1/read", {}, 404, id="read-negative-notification"),
        pytest.param(
            "POST", "/v1/notifications/99999999999999999999/read", {}, 404, id="read-huge-notification"
        ),
        pytest.param("POST", "/v1/notifications/abc/read", {}, 404, id="read-non-int-notification"),
    ],
)
async def test_odd_staff_requests(
    client: httpx.AsyncClient,
    platform: Platform,
    staff: dict[str, str],
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    kwargs = dict(kwargs)
    extra = kwargs.pop("headers", {})
    r = await client.request(method, path, headers={**_cm(platform, staff), **extra}, **kwargs)
    assert_problem(r, status)


@pytest.mark.parametrize(
    "last_event_id",
    [
        pytest.param("abc", id="not-int"),
        pytest.param("99999999999999999999", id="beyond-bigint"),
    ],
)
async def test_bad_last_event_id(
    client: httpx.AsyncClient, platform: Platform, staff: dict[str, str], last_event_id: str
) -> None:
    headers = {**_cm(platform, staff), "Last-Event-ID": last_event_id}
    async with client.stream("GET", "/v1/notifications/stream", headers=headers, timeout=5) as r:
        await r.aread()
    assert_problem(r, 422, "Last-Event-ID")


# --------------------------------------------------------------------------- regions


async def test_out_of_area_becomes_unroutable(client: httpx.AsyncClient, keys: dict[int, str]) -> None:
    r = await post_referral(client, keys[MAIN], body(location={"zip": "10001"}))
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["region"] is None
    rid = view["id"]

    async def unroutable() -> Any:
        v = (await client.get(f"/v1/referrals/{rid}", headers=auth(keys[MAIN]))).json()
        return v if v["status"] == "unroutable" else None

    v = await wait_for(unroutable)
    assert v["unroutable_reason"] == "out_of_area"
    assert v["region"] is None


@pytest.mark.parametrize(
    ("location", "region"),
    [
        pytest.param({"lat": 34.19, "lon": -118.45}, "san_fernando_valley", id="sfv-point"),
        pytest.param({"zip": "90011"}, "south_la", id="south-zip"),
        pytest.param({"zip": "90011-1234"}, "south_la", id="zip-plus-4"),
        pytest.param({"lat": 40.75, "lon": -73.99}, None, id="nyc-point"),
    ],
)
async def test_region_resolution(
    client: httpx.AsyncClient, keys: dict[int, str], location: dict[str, Any], region: str | None
) -> None:
    r = await post_referral(client, keys[QUIET], body(location=location))
    assert r.status_code == 201, r.text
    assert r.json()["region"] == region


# --------------------------------------------------------------------------- logs (keep last)


async def test_zz_no_pii_in_logs(platform: Platform, db: asyncpg.Connection) -> None:
    await _settle(db)
    await asyncio.sleep(0.5)  # let the workers flush their last lines
    logs = platform.logs()
    assert "http.request" in logs, "the intake should log requests"
    for secret in (FIRST, LAST, PHONE, DOB, NOTES, "Glimmerquay"):
        assert secret not in logs, f"{secret!r} found in service logs"


async def test_zz_no_500_in_logs(platform: Platform) -> None:
    lines = [json.loads(line) for line in platform.logs().splitlines() if line.startswith("{")]
    failures = [
        e
        for e in lines
        if (e.get("event") == "http.request" and e.get("status", 0) >= 500)
        or e.get("event") == "request.unhandled"
    ]
    assert failures == []


# --------------------------------------------------------------------------- every offending field at once


async def test_an_empty_referral_names_every_missing_required_field(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection
) -> None:
    async with writes_nothing(db):
        r = await client.post("/v1/referrals", json={}, headers=auth(keys[QUIET]))
    p = assert_problem(r, 422)
    assert [e["field"] for e in p["errors"]] == ["youth", "location", "needs", "consent"]
    assert all(e["message"] == "is required" for e in p["errors"]), p


async def test_every_wrong_field_is_listed_in_words_without_regexes(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection
) -> None:
    payload = body()
    payload["youth"]["first_name"] = "   "
    payload["youth"]["favourite_colour"] = "blue"
    payload["location"] = {"zip": "9001"}
    payload["needs"] = ["housing", "flying"]
    payload["consent"]["method"] = "oral"
    payload["consent"]["obtained_at"] = "2026-01-01T10:00:00"  # no time zone
    payload["language"] = "Spanish"
    del payload["consent"]["scope"]
    async with writes_nothing(db):
        r = await client.post("/v1/referrals", json=payload, headers=auth(keys[QUIET]))
    p = assert_problem(r, 422)
    errors = {e["field"]: e["message"] for e in p["errors"]}
    assert set(errors) == {
        "youth.first_name",
        "youth.favourite_colour",
        "location.zip",
        "needs[1]",
        "consent.method",
        "consent.obtained_at",
        "consent.scope",
        "language",
    }, errors
    assert errors["location.zip"] == "must be a US ZIP code: five digits, or ZIP+4 (e.g. 90011 or 90011-1234)"
    assert errors["consent.scope"] == "is required"
    assert "written" in errors["consent.method"] and "housing" in errors["needs[1]"]
    assert "time zone" in errors["consent.obtained_at"]
    # Written for a partner's developer: no internal regular expressions anywhere.
    for text in (p["detail"], *errors.values()):
        assert "regex" not in text and "[0-9]" not in text and "(?!" not in text and "\\S" not in text, text


async def test_semantic_errors_are_all_listed_too(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection
) -> None:
    now = datetime.now(UTC)
    payload = body(**{"youth.date_of_birth": "2000-01-01", "needs": ["housing", "housing"]})
    payload["consent"].update(
        obtained_at=(now + timedelta(days=2)).isoformat(),
        expires_at=(now - timedelta(days=1)).isoformat(),
        scope=["evaluation"],
    )
    async with writes_nothing(db):
        r = await client.post("/v1/referrals", json=payload, headers=auth(keys[QUIET]))
    p = assert_problem(r, 422)
    assert {e["field"] for e in p["errors"]} >= {
        "youth.date_of_birth",
        "needs",
        "consent.obtained_at",
        "consent.expires_at",
        "consent.scope",
    }, p


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/xml", None, "application/fhir+json"],
)
async def test_a_body_that_is_not_json_is_unsupported_media_type(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection, content_type: str | None
) -> None:
    headers = auth(keys[QUIET])
    if content_type is not None:
        headers["content-type"] = content_type
    async with writes_nothing(db):
        r = await client.post("/v1/referrals", content=json.dumps(body()).encode(), headers=headers)
    p = assert_problem(r, 415)
    assert "application/json" in p["detail"]


async def test_json_with_a_charset_parameter_is_json(
    client: httpx.AsyncClient, keys: dict[int, str], db: asyncpg.Connection
) -> None:
    async with writes_one_referral(db):
        r = await client.post(
            "/v1/referrals",
            content=json.dumps(body()).encode(),
            headers={**auth(keys[QUIET]), "content-type": "application/json; charset=utf-8"},
        )
    assert r.status_code == 201, r.text
