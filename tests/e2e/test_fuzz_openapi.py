"""Property-based fuzz of the running app's OpenAPI (schemathesis + Hypothesis): no request a client can
send gets a 5xx, and no response breaks the schema the app documents for it.

The schema is loaded from the running platform's /schema/openapi.json, so an operation added to the app
is fuzzed without touching this file. Every operation is fuzzed twice:

- ``random``: schema-valid and schema-breaking requests (schemathesis' positive and negative modes
  mixed); ids in paths are random, so most calls stop at validation or "not found";
- ``realistic``: schema-valid requests aimed at resources that exist (referrals offered to, accepted
  and engaged by a case manager, their assignments and notifications, a partner, an API key, a case
  manager profile, a webhook endpoint, a delivery, a bus dead letter), with bodies pruned to the
  documented fields and dates, ids and consent made plausible, so the fuzz reaches the code behind the
  lookups and validates real 2xx bodies against their documented schemas.

Each request carries the credential of a role that may use the operation (partner, the case manager
holding the resource, admin, evaluator), so the fuzz exercises handlers rather than guards (the guards
are the authorisation matrix's business). Checks: schemathesis' `not_a_server_error` and
`response_schema_conformance`. Operations with a known defect are left to `test_known_defects_still_fail`,
which replays the minimal failing request and fuzzes them, and fails once a defect is fixed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import nats
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from shared.codes import CONSENT_SCOPES
from tests.conftest import SEEDED_TEMPLATE, clone_database
from tests.support.platform import Platform, referral_body, running_platform

MAX_EXAMPLES = int(os.environ.get("REFNET_FUZZ_EXAMPLES", "25"))
REALISTIC_EXAMPLES = max(1, MAX_EXAMPLES * 3 // 5)
# Reproducible by default (CI must not flake); set REFNET_FUZZ_SEED to explore other inputs.
SEED = os.environ.get("REFNET_FUZZ_SEED")
MODES = ("random", "realistic")
CHECKS = [not_a_server_error, response_schema_conformance]
NO_AUTH = ("/v1/auth/token", "/healthz", "/readyz", "/metrics")
CASE_WORK = ("/details", "/contact", "/close", "/interventions", "/outcomes", "/history")

# Not fuzzed, with the reason.
EXCLUDED = {
    ("GET", "/v1/notifications/stream"): "Server-Sent Events: the response never ends",
}


@dataclass(frozen=True)
class Defect:
    """A defect the fuzz found, and the minimal request it shrank to: replayed, so whether it still fails
    does not hang on this seed's examples happening to hit it again."""

    reason: str
    query: dict[str, Any] | None = None
    body: Any = None
    path_parameters: dict[str, Any] | None = None
    # Aim at the real resource the realistic mode uses (the defect is behind the existence check).
    real_ids: bool = False
    # A response that breaks its documented schema (the document is wrong, not the server): the main
    # fuzz still runs the operation, for server errors only.
    schema_only: bool = False


# Operations the fuzz shows to be broken, checked by test_known_defects_still_fail.
KNOWN_DEFECTS: dict[tuple[str, str], Defect] = {}


# --------------------------------------------------------------------------- a platform for the fuzz


@pytest.fixture(scope="module")
def platform(
    pg_server: Any, seeded_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    """The shared fixture's platform, with the per-credential rate limit raised out of the way: the fuzz
    sends a few thousand requests under one credential per role, and 429s would only hide handlers."""
    dsn = asyncio.run(clone_database(pg_server, "p", SEEDED_TEMPLATE))
    with running_platform(
        dsn,
        tmp_path_factory.mktemp("platform"),
        seeded_template,
        extra_env={"REFNET_RATE_LIMIT_PER_MINUTE": "1000000"},
    ) as plat:
        yield plat


def _poll(predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"condition not met within {timeout}s")


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _key(op: Any) -> tuple[str, str]:
    return (op.method.upper(), op.path)


def _report(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:3000]


@dataclass
class Known:
    """Real path parameters for one operation and the credential of the role that owns them."""

    path_parameters: dict[str, Any]
    token: str


@dataclass
class Fuzz:
    platform: Platform
    schema: Any  # schemathesis' OpenApiSchema
    doc: dict[str, Any]  # the same document as JSON, to prune bodies to what it declares
    tokens: dict[str, str]  # partner, cm, admin, evaluator
    known: dict[tuple[str, str], Known] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # values the body fixers may use

    def operations(self) -> list[Any]:
        # A schema the loader cannot read is itself a failure: `.ok()` raises.
        return [result.ok() for result in self.schema.get_all_operations()]

    def token_for(self, method: str, path: str) -> str | None:
        if path in NO_AUTH or path.startswith("/schema"):
            return None
        if path.startswith("/v1/admin") or path.endswith("/routing"):
            return self.tokens["admin"]
        if path.startswith("/v1/evaluation"):
            return self.tokens["evaluator"]
        if path.startswith(("/v1/assignments", "/v1/notifications")) or path.endswith(CASE_WORK):
            return self.tokens["cm"]
        return self.tokens["partner"]

    def run(self, op: Any, mode: str, *, shrink: bool = True, checks: list[Any] = CHECKS) -> str | None:
        """Fuzz one operation in one mode; the failure report, or None."""
        key = _key(op)
        token = self.token_for(*key)
        if mode == "random":
            strategy = st.one_of(
                op.as_strategy(), op.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE)
            )
            examples = MAX_EXAMPLES
        else:
            known = self.known.get(key)
            if (op.path_parameters and known is None) or (not op.path_parameters and not op.body):
                return None  # nothing real to aim at: the random run covers it
            path_parameters = None
            if known is not None:
                path_parameters, token = known.path_parameters, known.token
            body_schema = self._body_schema(key)
            strategy = op.as_strategy(path_parameters=path_parameters).map(
                lambda case: self._plausible(key, body_schema, case)
            )
            examples = REALISTIC_EXAMPLES
        headers = _bearer(token)

        @given(case=strategy)
        @settings(
            max_examples=examples,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=SEED is None,
            phases=[Phase.explicit, Phase.generate, *([Phase.shrink] if shrink else [])],
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=checks, timeout=15)

        if SEED is not None:
            fuzz = seed(int(SEED))(fuzz)
        try:
            fuzz()
        except Unsatisfiable:
            return None  # e.g. an operation whose inputs cannot be made invalid
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup, a transport error
            return _report(exc)
        return None

    def replay(self, op: Any, defect: Defect) -> str | None:
        """Send a defect's recorded request once; the failure report, or None."""
        key = _key(op)
        token = self.token_for(*key)
        path_parameters = defect.path_parameters
        if defect.real_ids:
            known = self.known[key]
            path_parameters, token = known.path_parameters, known.token
        kwargs: dict[str, Any] = {"path_parameters": path_parameters, "query": defect.query}
        if defect.body is not None:
            kwargs.update(body=defect.body, media_type="application/json")
        case = op.Case(**kwargs)
        try:
            case.call_and_validate(headers=_bearer(token), checks=CHECKS, timeout=15)
        except (Exception, BaseExceptionGroup) as exc:
            return _report(exc)
        return None

    # ---- realistic bodies

    def _body_schema(self, key: tuple[str, str]) -> dict[str, Any] | None:
        operation = self.doc["paths"][key[1]][key[0].lower()]
        content = operation.get("requestBody", {}).get("content", {})
        schema = content.get("application/json", {}).get("schema")
        return schema if isinstance(schema, dict) else None

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[-1]
            schema = self.doc["components"]["schemas"][name]
        return schema

    def _prune(self, value: Any, schema: dict[str, Any] | None) -> Any:
        """Drop object members the schema does not declare (the service refuses unknown fields)."""
        if schema is None:
            return value
        schema = self._resolve(schema)
        for alternative in schema.get("oneOf", []) + schema.get("anyOf", []):
            alternative = self._resolve(alternative)
            if isinstance(value, dict) and "properties" in alternative:
                return self._prune(value, alternative)
            if isinstance(value, list) and "items" in alternative:
                return self._prune(value, alternative)
        if isinstance(value, dict) and "properties" in schema:
            props = schema["properties"]
            return {k: self._prune(v, props[k]) for k, v in value.items() if k in props}
        if isinstance(value, list) and isinstance(schema.get("items"), dict):
            return [self._prune(v, schema["items"]) for v in value]
        return value

    def _plausible(self, key: tuple[str, str], body_schema: dict[str, Any] | None, case: Any) -> Any:
        if body_schema is not None and isinstance(case.body, dict):
            case.body = self._prune(case.body, body_schema)
            fix = BODY_FIXES.get(key)
            if fix is not None:
                fix(self, case.body)
        return case


# ---- per-operation touches that make a pruned body likely to pass the service's own checks


def _la_today() -> str:
    return datetime.now(ZoneInfo("America/Los_Angeles")).date().isoformat()


def _fix_referral(f: Fuzz, body: dict[str, Any]) -> None:
    now = datetime.now(UTC)
    if isinstance(body.get("youth"), dict):
        today = datetime.now(ZoneInfo("America/Los_Angeles")).date()
        body["youth"]["date_of_birth"] = today.replace(
            year=today.year - 16, day=min(today.day, 28)
        ).isoformat()
    consent = body.get("consent")
    if isinstance(consent, dict):
        consent["obtained_at"] = (now - timedelta(days=1)).isoformat()
        consent["expires_at"] = (now + timedelta(days=365)).isoformat()
        # Scopes are a closed list (contract v1.1): keep the known ones the fuzzer happened to pick.
        scope = [s for s in consent.get("scope") or [] if s in CONSENT_SCOPES]
        consent["scope"] = list(dict.fromkeys(["case_management", *scope]))[:20]
    if isinstance(body.get("needs"), list):
        body["needs"] = list(dict.fromkeys(body["needs"])) or ["housing"]
    location = body.get("location")
    if (
        isinstance(location, dict)
        and location.get("zip") is None
        and None in (location.get("lat"), location.get("lon"))
    ):
        body["location"] = {"zip": "90011"}


def _fix_webhook(f: Fuzz, body: dict[str, Any]) -> None:
    body["url"] = "http://127.0.0.1:9/refnet-fuzz-realistic"


def _fix_assign(f: Fuzz, body: dict[str, Any]) -> None:
    body["case_manager_id"] = f.ids["other_cm"]


def _fix_intervention(f: Fuzz, body: dict[str, Any]) -> None:
    body["delivered_on"] = _la_today()
    body["provider"] = "external"


def _fix_outcome(f: Fuzz, body: dict[str, Any]) -> None:
    body["observed_on"] = _la_today()


def _fix_contact(f: Fuzz, body: dict[str, Any]) -> None:
    body.pop("contacted_at", None)


BODY_FIXES: dict[tuple[str, str], Callable[[Fuzz, dict[str, Any]], None]] = {
    ("POST", "/v1/referrals"): _fix_referral,
    ("POST", "/v1/webhooks"): _fix_webhook,
    ("POST", "/v1/admin/referrals/{referral_id}/assign"): _fix_assign,
    ("POST", "/v1/referrals/{referral_id}/interventions"): _fix_intervention,
    ("POST", "/v1/referrals/{referral_id}/outcomes"): _fix_outcome,
    ("POST", "/v1/referrals/{referral_id}/contact"): _fix_contact,
}


# --------------------------------------------------------------------------- real resources to aim at


@dataclass(frozen=True)
class Offer:
    referral_id: str
    assignment_id: str
    holder: str  # the token of the case manager holding the offer


class World:
    """Builds the resources through the API as their owners would."""

    def __init__(self, platform: Platform, client: httpx.Client) -> None:
        creds = platform.creds
        self.platform = platform
        self.client = client
        self.partner = platform.partner_key(0)
        self.admin = platform.staff_token(creds["admins"][0])
        self.cm_tokens = {
            cm["id"]: platform.staff_token(cm)
            for cm in creds["case_managers"]
            if cm["regions"] == ["south_la"]
        }

    def offered(self) -> Offer:
        """Post a South LA referral and wait until routing has offered it to a case manager."""
        r = self.client.post("/v1/referrals", json=referral_body(), headers=_bearer(self.partner))
        assert r.status_code == 201, r.text
        rid = r.json()["id"]

        def find() -> Offer | None:
            for token in self.cm_tokens.values():
                offers = self.client.get("/v1/assignments?state=offered", headers=_bearer(token))
                for offer in offers.json()["items"]:
                    if offer["referral_id"] == rid:
                        return Offer(rid, offer["id"], token)
            return None

        found: Offer = _poll(find)
        return found

    def accepted(self) -> Offer:
        offer = self.offered()
        r = self.client.post(f"/v1/assignments/{offer.assignment_id}/accept", headers=_bearer(offer.holder))
        assert r.status_code == 200, r.text
        return offer

    def engaged(self) -> Offer:
        offer = self.accepted()
        r = self.client.post(
            f"/v1/referrals/{offer.referral_id}/contact", json={}, headers=_bearer(offer.holder)
        )
        assert r.status_code == 200, r.text
        return offer

    def admin_post(self, path: str, body: Any) -> dict[str, Any]:
        r = self.client.post(path, json=body, headers=_bearer(self.admin))
        assert r.status_code in (200, 201), r.text
        created: dict[str, Any] = r.json()
        return created

    def dead_letter(self) -> int:
        """An undecodable event published where routing consumes: the consumer dead-letters it."""

        async def publish() -> None:
            nc = await nats.connect(self.platform.nats_url)
            try:
                await nc.jetstream().publish("refnet.referral.received", b"fuzz: not an event")
            finally:
                await nc.close()

        asyncio.run(publish())

        def listed() -> int | None:
            r = self.client.get("/v1/admin/dead-letters?limit=1", headers=_bearer(self.admin))
            items = r.json().get("items", []) if r.status_code == 200 else []
            return int(items[0]["id"]) if items else None

        found: int = _poll(listed)
        return found


@pytest.fixture(scope="module")
def fuzz(platform: Platform) -> Fuzz:
    creds = platform.creds
    partner_id = creds["partners"][0]["id"]
    other_partner = creds["partners"][-1]["id"]
    evaluator = platform.staff_token(creds["evaluators"][0])
    with httpx.Client(base_url=platform.base_url, timeout=20) as client:
        w = World(platform, client)
        main, withdraw, assign = w.offered(), w.offered(), w.offered()
        accept, decline = w.offered(), w.offered()
        contact, close, case = w.accepted(), w.engaged(), w.engaged()

        def notification() -> int | None:
            r = client.get("/v1/notifications?limit=200", headers=_bearer(main.holder))
            ids = [n["id"] for n in r.json()["items"] if n["referral_id"] == main.referral_id]
            return ids[0] if ids else None

        nid = _poll(notification)
        # Another partner's key than the one the fuzz authenticates with: revoking it locks nobody out.
        key_id = w.admin_post(f"/v1/admin/partners/{other_partner}/keys", {"label": "fuzz"})["id"]
        spare_cm = w.admin_post(
            "/v1/admin/case-managers",
            {
                "email": "fuzz-spare@example.org",
                "name": "Fuzz Spare",
                "regions": ["south_la"],
                "needs": ["housing"],
                "capacity": 0,
                "status": "inactive",
            },
        )["id"]
        # Two webhook endpoints (nothing listens there): one to delete, one for everything else.
        hooks = [
            client.post(
                "/v1/webhooks",
                json={"url": f"http://127.0.0.1:9/refnet-fuzz-{i}", "events": ["referral.status_changed"]},
                headers=_bearer(w.partner),
            ).json()
            for i in range(2)
        ]
        # notify makes the registration's test delivery from intake's outboxed request: aim at it once made.
        test_delivery = hooks[0].get("test_delivery_id")
        _poll(
            lambda: (
                client.get(f"/v1/admin/deliveries/{test_delivery}", headers=_bearer(w.admin)).status_code
                == 200
            )
        )
        dead_letter = w.dead_letter()
        other_cm = next(cm for cm, token in w.cm_tokens.items() if token != assign.holder)
        doc = client.get("/schema/openapi.json").json()

    schema = schemathesis.openapi.from_url(f"{platform.base_url}/schema/openapi.json")
    f = Fuzz(
        platform=platform,
        schema=schema,
        doc=doc,
        tokens={"partner": w.partner, "cm": main.holder, "admin": w.admin, "evaluator": evaluator},
        ids={"other_cm": other_cm},
    )
    admin, partner = w.admin, w.partner
    ref, cases = "/v1/referrals/{referral_id}", "/v1/referrals/{referral_id}/"
    known = {
        ("GET", ref): Known({"referral_id": main.referral_id}, partner),
        ("GET", cases + "details"): Known({"referral_id": main.referral_id}, main.holder),
        ("GET", cases + "routing"): Known({"referral_id": main.referral_id}, admin),
        ("POST", cases + "contact-preference"): Known({"referral_id": main.referral_id}, partner),
        ("POST", "/v1/admin/referrals/{referral_id}/break-glass"): Known(
            {"referral_id": main.referral_id}, admin
        ),
        ("POST", cases + "consent/withdraw"): Known({"referral_id": withdraw.referral_id}, partner),
        ("POST", "/v1/admin/referrals/{referral_id}/assign"): Known(
            {"referral_id": assign.referral_id}, admin
        ),
        ("POST", "/v1/assignments/{assignment_id}/accept"): Known(
            {"assignment_id": accept.assignment_id}, accept.holder
        ),
        ("POST", "/v1/assignments/{assignment_id}/decline"): Known(
            {"assignment_id": decline.assignment_id}, decline.holder
        ),
        ("POST", cases + "contact"): Known({"referral_id": contact.referral_id}, contact.holder),
        ("POST", cases + "close"): Known({"referral_id": close.referral_id}, close.holder),
        ("POST", "/v1/notifications/{notification_id}/read"): Known({"notification_id": nid}, main.holder),
        ("GET", "/v1/admin/partners/{partner_id}/keys"): Known({"partner_id": partner_id}, admin),
        ("POST", "/v1/admin/partners/{partner_id}/keys"): Known({"partner_id": other_partner}, admin),
        ("POST", "/v1/admin/keys/{key_id}/revoke"): Known({"key_id": key_id}, admin),
        ("POST", "/v1/admin/keys/{key_id}/rotate"): Known({"key_id": key_id}, admin),
        ("GET", "/v1/admin/case-managers/{case_manager_id}"): Known({"case_manager_id": spare_cm}, admin),
        ("PATCH", "/v1/admin/case-managers/{case_manager_id}"): Known({"case_manager_id": spare_cm}, admin),
        ("GET", "/v1/admin/dead-letters/{dead_letter_id}"): Known({"dead_letter_id": dead_letter}, admin),
        ("DELETE", "/v1/webhooks/{endpoint_id}"): Known({"endpoint_id": hooks[1].get("id")}, partner),
    }
    for method, suffix in (
        ("GET", "interventions"),
        ("POST", "interventions"),
        ("GET", "outcomes"),
        ("POST", "outcomes"),
        ("GET", "history"),
    ):
        known[(method, cases + suffix)] = Known({"referral_id": case.referral_id}, case.holder)
    for method, path in (
        ("GET", "/v1/webhooks/{endpoint_id}"),
        ("POST", "/v1/webhooks/{endpoint_id}/rotate-secret"),
        ("POST", "/v1/webhooks/{endpoint_id}/test"),
        ("POST", "/v1/webhooks/{endpoint_id}/enable"),
        ("GET", "/v1/webhooks/{endpoint_id}/deliveries"),
    ):
        known[(method, path)] = Known({"endpoint_id": hooks[0].get("id")}, partner)
    delivery = hooks[0].get("test_delivery_id")
    known[("GET", "/v1/admin/deliveries/{delivery_id}")] = Known({"delivery_id": delivery}, admin)
    known[("POST", "/v1/admin/deliveries/{delivery_id}/replay")] = Known({"delivery_id": delivery}, admin)
    f.known = known
    return f


# --------------------------------------------------------------------------- the tests


def test_fuzz_lists_are_current(fuzz: Fuzz) -> None:
    """Every operation named in this module still exists: a renamed one would silently go unfuzzed."""
    live = {_key(op) for op in fuzz.operations()}
    assert ("POST", "/v1/referrals") in live
    named = set(EXCLUDED) | set(KNOWN_DEFECTS) | set(fuzz.known) | set(BODY_FIXES)
    stale = sorted(f"{m} {p}" for m, p in named - live)
    assert not stale, f"named in tests/e2e/test_fuzz_openapi.py but gone from the app: {stale}"


@pytest.mark.parametrize("mode", MODES)
def test_fuzz(fuzz: Fuzz, mode: str) -> None:
    failures: dict[str, str] = {}
    ran = 0
    for op in fuzz.operations():
        defect = KNOWN_DEFECTS.get(_key(op))
        if _key(op) in EXCLUDED or (defect is not None and not defect.schema_only):
            continue
        ran += 1
        # An operation whose documented schema is known to be wrong is still fuzzed for server errors.
        report = fuzz.run(op, mode, checks=[not_a_server_error] if defect else CHECKS)
        if report is not None:
            failures[f"{op.method.upper()} {op.path}"] = report
    assert ran > 0
    assert not failures, "\n\n".join(f"=== {label} ({mode})\n{report}" for label, report in failures.items())


def test_known_defects_still_fail(fuzz: Fuzz) -> None:
    """Each operation in KNOWN_DEFECTS still shows its defect: the recorded request or the fuzz (no
    shrinking: slow, and the recorded request already is the minimal one) still fails. Once one passes,
    this fails naming it: remove it from KNOWN_DEFECTS so the main fuzz checks it again."""
    live = {_key(op): op for op in fuzz.operations()}
    gone = sorted(f"{m} {p}" for m, p in set(KNOWN_DEFECTS) - set(live))
    assert not gone, f"known defects of operations that no longer exist: {gone}"
    fixed = []
    for key, defect in KNOWN_DEFECTS.items():
        reports = [
            fuzz.replay(live[key], defect),
            *(fuzz.run(live[key], mode, shrink=False) for mode in MODES),
        ]
        if all(report is None for report in reports):
            fixed.append(f"{key[0]} {key[1]}")
    assert not fixed, f"fixed, remove from KNOWN_DEFECTS: {fixed}"


# --------------------------------------------------------------------------- what the document says


def _request_schemas(doc: dict[str, Any]) -> set[str]:
    """Names of the component schemas request bodies use, directly or nested."""
    pending = [
        content["schema"]
        for item in doc["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict)
        for content in operation.get("requestBody", {}).get("content", {}).values()
        if "schema" in content
    ]
    names: set[str] = set()
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.rsplit("/", 1)[-1] not in names:
                names.add(ref.rsplit("/", 1)[-1])
                pending.append(doc["components"]["schemas"][ref.rsplit("/", 1)[-1]])
            pending.extend(v for k, v in node.items() if k != "$ref")
        elif isinstance(node, list):
            pending.extend(node)
    return names


def test_documented_error_responses_are_problem_json(fuzz: Fuzz) -> None:
    wrong = sorted(
        f"{method.upper()} {path} {status}: {sorted(response.get('content', {}))}"
        for path, item in fuzz.doc["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict)
        for status, response in operation.get("responses", {}).items()
        if status.startswith("4") and "application/problem+json" not in response.get("content", {})
    )
    assert not wrong, wrong


def test_request_schemas_forbid_unknown_fields(fuzz: Fuzz) -> None:
    schemas = fuzz.doc["components"]["schemas"]
    open_ = sorted(
        name
        for name in _request_schemas(fuzz.doc)
        if "properties" in schemas[name] and schemas[name].get("additionalProperties") is not False
    )
    assert not open_, open_
