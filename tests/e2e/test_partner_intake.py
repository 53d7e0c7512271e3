"""Every partner can refer (issue 17), end to end over the running services: FHIR Bundles built with
fhir.resources become referrals whose Task follows the case; the agency's hotline intake reaches the
evaluation by its origin; a second partner's referral of the same youth is flagged to staff and routed
to the case manager already working with them; a consent renewal keeps an engaged case's details past
the old expiry (and only an unrenewed expiry shreds). The web form's browser tests are in
test_partner_web.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task

from refnet_dev.embedded import EmbeddedPostgres, free_port
from tests.conftest import SEEDED_TEMPLATE, clone_database
from tests.support.platform import Platform, referral_body, running_platform, wait_for
from tests.support.receivers import WebhookReceiver

FHIR = "application/fhir+json"


@pytest.fixture(scope="module")
def plat(
    pg_server: EmbeddedPostgres, seeded_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    dsn = asyncio.run(clone_database(pg_server, "pi", SEEDED_TEMPLATE))
    extra = {
        "REFNET_ROUTING_METRICS_PORT": str(free_port()),
        "REFNET_NOTIFY_METRICS_PORT": str(free_port()),
    }
    with running_platform(dsn, tmp_path_factory.mktemp("intake17"), seeded_template, extra_env=extra) as p:
        yield p


@pytest.fixture
async def db(plat: Platform) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(plat.dsn)
    yield conn
    await conn.close()


@pytest.fixture
async def client(plat: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=plat.base_url, timeout=15) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def youth(first: str, last: str, born: date, phone: str) -> dict[str, Any]:
    return {"first_name": first, "last_name": last, "date_of_birth": born.isoformat(), "phone": phone}


async def post_referral(client: httpx.AsyncClient, key: str, **overrides: Any) -> str:
    r = await client.post("/v1/referrals", json=referral_body(**overrides), headers=bearer(key))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def offered_to(db: asyncpg.Connection, rid: str) -> str:
    async def offer() -> Any:
        return await db.fetchval(
            "SELECT case_manager_id FROM assignments WHERE referral_id = $1 AND state = 'offered'", rid
        )

    return str(await wait_for(offer, timeout=20))


def cm_token(plat: Platform, cm_id: str) -> str:
    person = next(p for p in plat.creds["case_managers"] if p["id"] == cm_id)
    return plat.staff_token(person)


async def accept(
    client: httpx.AsyncClient, db: asyncpg.Connection, plat: Platform, rid: str
) -> tuple[str, str]:
    """The case manager offered ``rid`` accepts it; returns their id and token."""
    cm = await offered_to(db, rid)
    token = cm_token(plat, cm)
    aid = await db.fetchval("SELECT id FROM assignments WHERE referral_id = $1 AND state = 'offered'", rid)
    r = await client.post(f"/v1/assignments/{aid}/accept", headers=bearer(token))
    assert r.status_code == 200, r.text
    return cm, token


# --------------------------------------------------------------------------------------------- FHIR


def fhir_bundle(
    identifier: str,
    *,
    born: str = "",
    given: str = "Quintessa",
    priority: str = "routine",
    scopes: tuple[str, ...] = ("case_management", "share_status_with_referrer"),
) -> Bundle:
    """A transaction Bundle as a hospital system would build it, with fhir.resources' R4B models."""
    now = datetime.now(UTC)
    patient_url, request_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    patient = Patient.model_validate(
        {
            "resourceType": "Patient",
            "name": [{"given": [given], "family": "Dunmorrow"}],
            "birthDate": born or (now - timedelta(days=17 * 365)).date().isoformat(),
            "telecom": [{"system": "phone", "value": "213-555-0142"}],
            "gender": "female",
            "address": [{"postalCode": "90011"}],
            "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "es"}]}}],
        }
    )
    request = ServiceRequest.model_validate(
        {
            "resourceType": "ServiceRequest",
            "status": "active",
            "intent": "order",
            "priority": priority,
            "subject": {"reference": patient_url},
            "category": [
                {"coding": [{"system": "urn:refnet:need", "code": "housing"}]},
                {"coding": [{"system": "urn:refnet:need", "code": "medical"}]},
            ],
            "extension": [{"url": "urn:refnet:referral-setting", "valueCode": "emergency_room"}],
        }
    )
    consent = Consent.model_validate(
        {
            "resourceType": "Consent",
            "status": "active",
            "scope": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}
                ]
            },
            "category": [{"coding": [{"system": "urn:refnet:consent-method", "code": "written"}]}],
            "patient": {"reference": patient_url},
            "dateTime": (now - timedelta(hours=2)).isoformat(),
            "provision": {
                "period": {"end": (now + timedelta(days=365)).isoformat()},
                # The youth agreed that the referrer may follow the case: the Task's status moves.
                "purpose": [{"system": "urn:refnet:consent-scope", "code": code} for code in scopes],
            },
        }
    )
    task = Task.model_validate(
        {
            "resourceType": "Task",
            "status": "requested",
            "intent": "order",
            "identifier": [{"system": "urn:example:er-system", "value": identifier}],
            "focus": {"reference": request_url},
            "for": {"reference": patient_url},
        }
    )
    return Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {
                    "fullUrl": patient_url,
                    "resource": patient,
                    "request": {"method": "POST", "url": "Patient"},
                },
                {
                    "fullUrl": request_url,
                    "resource": request,
                    "request": {"method": "POST", "url": "ServiceRequest"},
                },
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": consent,
                    "request": {"method": "POST", "url": "Consent"},
                },
                {
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                    "resource": task,
                    "request": {"method": "POST", "url": "Task"},
                },
            ],
        }
    )


def valid(model: Any, r: httpx.Response) -> dict[str, Any]:
    """The response body, after fhir.resources' R4B model accepted it."""
    assert r.headers["content-type"].startswith(FHIR), r.headers
    model.model_validate_json(r.content)
    doc: dict[str, Any] = json.loads(r.content)
    return doc


def outcome(r: httpx.Response, status: int) -> list[dict[str, Any]]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(FHIR)
    doc = OperationOutcome.model_validate_json(r.content)
    return [i.model_dump(mode="json", exclude_none=True) for i in doc.issue]


async def test_fhir_bundle_becomes_a_referral_whose_task_follows_it(
    plat: Platform, db: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    key, other_key = plat.partner_key(1), plat.partner_key(2)
    meta = await client.get("/fhir/r4/metadata")
    assert meta.status_code == 200 and meta.headers["content-type"].startswith(FHIR)
    capability = CapabilityStatement.model_validate_json(meta.content)
    assert capability.fhirVersion == "4.0.1"

    # The hospital's system listens for Task changes (the Subscription-less pattern: a task.updated webhook).
    receiver = await WebhookReceiver().start()
    hook = await client.post(
        "/v1/webhooks",
        json={"url": receiver.url("/fhir-hook"), "events": ["task.updated"]},
        headers=bearer(key),
    )
    assert hook.status_code == 201, hook.text

    identifier = f"er-{uuid.uuid4().hex[:12]}"
    bundle = fhir_bundle(identifier)
    payload = bundle.model_dump_json(exclude_none=True)
    since = datetime.now(UTC) - timedelta(seconds=1)
    headers = {**bearer(key), "Content-Type": FHIR}
    r = await client.post("/fhir/r4", content=payload, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(FHIR)
    answer = valid(Bundle, r)
    assert answer["type"] == "transaction-response"
    task_entry = answer["entry"][3]
    assert task_entry["response"]["status"].startswith("201")
    location = task_entry["response"]["location"]
    assert location.startswith("Task/")
    rid = location.removeprefix("Task/")

    # Exactly as if posted to /v1/referrals: the same referral, routed, coded, sealed.
    row = await db.fetchrow(
        "SELECT partner_id, needs, urgency, language, intake FROM referrals WHERE id = $1", rid
    )
    assert row is not None
    assert str(row["partner_id"]) == plat.creds["partners"][1]["id"]
    assert sorted(row["needs"]) == ["housing", "medical"] and row["language"] == "es"
    assert '"emergency_room"' in row["intake"]
    view = await client.get(f"/v1/referrals/{rid}", headers=bearer(key))
    assert view.status_code == 200

    # The same Bundle again replays the original answer; other content under the identifier is a 409.
    again = await client.post("/fhir/r4", content=payload, headers=headers)
    assert again.status_code == 200
    assert valid(Bundle, again)["entry"][3]["response"]["location"] == location
    changed = fhir_bundle(identifier, priority="urgent").model_dump_json(exclude_none=True)
    issues = outcome(await client.post("/fhir/r4", content=changed, headers=headers), 409)
    assert issues[0]["code"] == "conflict" and issues[0]["expression"] == ["Task.identifier[0].value"]
    assert await db.fetchval("SELECT count(*) FROM referrals WHERE partner_id = $1", row["partner_id"]) == 1

    # The Task follows the referral: offered -> received, accepted -> accepted.
    await offered_to(db, rid)
    task = valid(Task, await client.get(f"/fhir/r4/Task/{rid}", headers=bearer(key)))
    assert (
        task["status"] == "received" and task["identifier"][0]["value"] == identifier and task["lastModified"]
    )
    await accept(client, db, plat, rid)
    got = await client.get(f"/fhir/r4/Task/{rid}", headers=bearer(key))
    assert got.status_code == 200
    assert valid(Task, got)["status"] == "accepted"

    async def told_accepted() -> Any:
        bodies = [json.loads(r.body) for r in receiver.received.get("/fhir-hook", [])]
        return [b for b in bodies if b["type"] == "task.updated" and b["data"]["status"] == "accepted"]

    [told] = await wait_for(told_accepted, timeout=20)
    assert told["data"] == {
        "referral_id": rid,
        "task": f"Task/{rid}",
        "status": "accepted",
        "referral_status": "accepted",
    }
    await receiver.stop()

    # Polling: a searchset of the partner's Tasks changed since then.
    search = await client.get(
        "/fhir/r4/Task", params={"_lastUpdated": "ge" + since.isoformat()}, headers=bearer(key)
    )
    assert search.status_code == 200, search.text
    found = valid(Bundle, search)
    assert found["type"] == "searchset"
    assert [e["resource"]["id"] for e in found["entry"]] == [rid]
    assert found["entry"][0]["resource"]["status"] == "accepted"
    later = await client.get(
        "/fhir/r4/Task",
        params={"_lastUpdated": "ge" + (datetime.now(UTC) + timedelta(minutes=1)).isoformat()},
        headers=bearer(key),
    )
    assert valid(Bundle, later).get("entry", []) == []

    # Another partner's Task does not exist for them; staff are not FHIR clients.
    outcome(await client.get(f"/fhir/r4/Task/{rid}", headers=bearer(other_key)), 404)
    assert rid not in (await client.get("/fhir/r4/Task", headers=bearer(other_key))).text
    outcome(
        await client.get(f"/fhir/r4/Task/{rid}", headers=bearer(cm_token(plat, await _holder(db, rid)))), 403
    )
    outcome(await client.get(f"/fhir/r4/Task/{rid}"), 401)


async def test_without_share_status_the_task_stays_requested_for_the_partner(
    plat: Platform, db: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    """The youth did not agree that the referrer may follow the case: the Task read and search show
    what the partner's status view shows (received, i.e. ``requested``), however far the case moved."""
    key = plat.partner_key(1)
    since = datetime.now(UTC) - timedelta(seconds=1)
    bundle = fhir_bundle(f"er-{uuid.uuid4().hex[:12]}", scopes=("case_management",))
    r = await client.post(
        "/fhir/r4",
        content=bundle.model_dump_json(exclude_none=True),
        headers={**bearer(key), "Content-Type": FHIR},
    )
    assert r.status_code == 200, r.text
    rid = valid(Bundle, r)["entry"][3]["response"]["location"].removeprefix("Task/")
    await accept(client, db, plat, rid)
    assert await db.fetchval("SELECT status FROM referrals WHERE id = $1", rid) == "accepted"
    assert valid(Task, await client.get(f"/fhir/r4/Task/{rid}", headers=bearer(key)))["status"] == "requested"
    assert (await client.get(f"/v1/referrals/{rid}", headers=bearer(key))).json()["status"] == "received"
    search = valid(
        Bundle,
        await client.get(
            "/fhir/r4/Task", params={"_lastUpdated": "ge" + since.isoformat()}, headers=bearer(key)
        ),
    )
    statuses = {e["resource"]["id"]: e["resource"]["status"] for e in search.get("entry", [])}
    assert statuses.get(rid) == "requested", statuses


async def _holder(db: asyncpg.Connection, rid: str) -> str:
    return str(
        await db.fetchval(
            "SELECT case_manager_id FROM assignments WHERE referral_id = $1 AND state = 'accepted'", rid
        )
    )


async def test_fhir_refusals_are_operation_outcomes_naming_the_element(
    plat: Platform, db: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    key = plat.partner_key(3)
    before = await db.fetchval("SELECT count(*) FROM referrals")
    payload = fhir_bundle(f"er-{uuid.uuid4().hex[:12]}").model_dump_json(exclude_none=True)
    # Only application/fhir+json.
    outcome(
        await client.post(
            "/fhir/r4", content=payload, headers={**bearer(key), "Content-Type": "application/json"}
        ),
        415,
    )
    # The referral rules, named as FHIR elements: a 9-year-old, all at once with other problems.
    too_young = (date.today() - timedelta(days=9 * 365)).isoformat()
    doc = fhir_bundle(f"er-{uuid.uuid4().hex[:12]}", born=too_young).model_dump(
        mode="json", exclude_none=True
    )
    issues = outcome(
        await client.post("/fhir/r4", json=doc, headers={**bearer(key), "Content-Type": FHIR}), 422
    )
    assert [i["expression"] for i in issues] == [["Patient.birthDate"]]
    assert all(i["code"] == "invalid" for i in issues)
    # Structural problems, every one reported.
    doc = fhir_bundle(f"er-{uuid.uuid4().hex[:12]}").model_dump(mode="json", exclude_none=True)
    doc["entry"][0]["resource"]["birthDate"] = "2010"
    doc["entry"][1]["resource"]["category"] = [{"coding": [{"system": "urn:refnet:need", "code": "flying"}]}]
    del doc["entry"][2]["resource"]["provision"]["period"]
    issues = outcome(
        await client.post("/fhir/r4", json=doc, headers={**bearer(key), "Content-Type": FHIR}), 422
    )
    expressions = {e for i in issues for e in i["expression"]}
    assert {
        "Patient.birthDate",
        "ServiceRequest.category[0].coding[0].code",
        "Consent.provision.period",
    } <= expressions
    del doc["entry"][3]
    issues = outcome(
        await client.post("/fhir/r4", json=doc, headers={**bearer(key), "Content-Type": FHIR}), 422
    )
    assert any("Task" in i["diagnostics"] for i in issues)
    outcome(
        await client.post("/fhir/r4", content=b"{not json", headers={**bearer(key), "Content-Type": FHIR}),
        400,
    )
    outcome(await client.get(f"/fhir/r4/Task/{uuid.uuid4()}", headers=bearer(key)), 404)
    outcome(await client.get("/fhir/r4/Task", params={"_lastUpdated": "yesterday"}, headers=bearer(key)), 422)
    assert await db.fetchval("SELECT count(*) FROM referrals") == before


# --------------------------------------------------------------------------------- hotline intake


async def test_hotline_referrals_are_routed_and_counted_in_the_evaluation_by_origin(
    plat: Platform, db: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    intake = plat.staff_token(plat.creds["intake_staff"][0])
    born = date.today() - timedelta(days=19 * 365)
    ids = []
    for i in range(12):
        body = referral_body(
            youth=youth(f"Hotcaller{i}", "Linewood", born - timedelta(days=i * 40), f"818-555-{1000 + i}"),
            location={"zip": "90011"},
            needs=["basic_needs"],
            language="en",
            intake={"referral_setting": "hotline"},
        )
        r = await client.post(
            "/v1/referrals", json=body, headers={**bearer(intake), "Idempotency-Key": f"hotline-{i}"}
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    # A partner may not claim the agency's origins; intake staff must give one of them.
    refused = await client.post(
        "/v1/referrals",
        json=referral_body(intake={"referral_setting": "walk_in"}),
        headers=bearer(plat.partner_key(0)),
    )
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "intake.referral_setting"
    refused = await client.post("/v1/referrals", json=referral_body(), headers=bearer(intake))
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "intake.referral_setting"

    # The agency is the partner of record; the audit log names the person who took the call.
    partners = await db.fetch(
        "SELECT DISTINCT p.kind FROM referrals r JOIN partners p ON p.id = r.partner_id WHERE r.id = any($1::uuid[])",
        ids,
    )
    assert [p["kind"] for p in partners] == ["coordinating_agency"]
    for rid in ids:
        await wait_for(lambda rid=rid: _routed(db, rid), timeout=20)

    evaluator = plat.staff_token(plat.creds["evaluators"][0])
    report = await client.get("/v1/evaluation/report", headers=bearer(evaluator))
    assert report.status_code == 200, report.text
    doc = report.json()
    # Counts of 1-10 never show, so the release may suppress this row's figures: its label shows.
    assert "hotline" in doc["referrals_by_source"]["rows"]
    # What the evaluation's cohort reads for each of them: the origin, coded (no free text).
    coded = await db.fetch(
        "SELECT intake->>'referral_setting' AS s FROM referrals WHERE id = any($1::uuid[])", ids
    )
    assert [r["s"] for r in coded] == ["hotline"] * 12


async def _routed(db: asyncpg.Connection, rid: str) -> bool:
    return bool(await db.fetchval("SELECT status <> 'received' FROM referrals WHERE id = $1", rid))


# ------------------------------------------------------------------------- one youth across partners


async def test_same_youth_from_a_second_partner_is_flagged_and_routed_to_the_same_case_manager(
    plat: Platform, db: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    born = date.today() - timedelta(days=15 * 365 + 40)
    first = await post_referral(
        client, plat.partner_key(4), youth=youth("Zyxwandra", "Quellmorrow", born, "(323) 555-0177")
    )
    cm, token = await accept(client, db, plat, first)
    # Another partner, another spelling, another phone format: the same youth.
    second = await post_referral(
        client,
        plat.partner_key(5),
        youth=youth("Zixwandra", "Quelmorrow", born, "+1 323 555 0177"),
        intake={"referral_setting": "school"},
    )
    assert await offered_to(db, second) == cm
    decision = await db.fetchval("SELECT detail::text FROM routing_decisions WHERE referral_id = $1", second)
    assert "worked with this youth before" in decision

    # Staff see it on either referral, with the other's status and holder; partners never do.
    matches = await client.get(f"/v1/referrals/{second}/matches", headers=bearer(token))
    assert matches.status_code == 200, matches.text
    [match] = matches.json()
    name = next(p["name"] for p in plat.creds["case_managers"] if p["id"] == cm)
    assert match["other_referral_id"] == first and match["holder"] == name
    assert match["other_status"] == "accepted" and match["status"] == "suggested"
    assert {"dob", "phone"} <= set(match["reasons"])
    supervisor = plat.staff_token(next(s for s in plat.creds["supervisors"] if s["region"] == "south_la"))
    assert (await client.get(f"/v1/referrals/{first}/matches", headers=bearer(supervisor))).json()[0][
        "id"
    ] == match["id"]
    for partner in (4, 5):
        key = plat.partner_key(partner)
        assert (await client.get(f"/v1/referrals/{second}/matches", headers=bearer(key))).status_code == 403
        for rid in (first, second):
            view = await client.get(f"/v1/referrals/{rid}", headers=bearer(key))
            assert view.status_code in (200, 404)
            assert first not in view.text.replace(rid, "") and second not in view.text.replace(rid, "")
    # A different youth with the same birth date and a different name and phone is not flagged.
    stranger = await post_referral(
        client, plat.partner_key(6), youth=youth("Bartholomew", "Ng", born, "626-555-0100")
    )
    await offered_to(db, stranger)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM youth_matches WHERE referral_id = $1 OR other_referral_id = $1", stranger
        )
        == 0
    )

    linked = await client.post(f"/v1/referrals/{second}/matches/{match['id']}/link", headers=bearer(token))
    assert linked.status_code == 200 and linked.json()["status"] == "linked"
    audited = await db.fetchval(
        "SELECT actor_id FROM audit_log WHERE action = 'youth_match.link' AND target_id = $1", match["id"]
    )
    assert audited == cm
    # Nothing of it at rest in clear: the blind indexes are keyed hashes.
    row = await db.fetchrow(
        "SELECT dob, exact, phone, first, last, first_tri FROM youth_blind WHERE referral_id = $1", second
    )
    assert row is not None and row["phone"] is not None and row["first_tri"]
    tokens = [bytes(v) for v in (*row.values(), *row["first_tri"]) if isinstance(v, bytes)]
    assert tokens and all(b"Zixwandra" not in t and b"0177" not in t for t in tokens)


# ---------------------------------------------------------------------------- consent over two years


async def _details(client: httpx.AsyncClient, token: str, rid: str) -> int:
    return (await client.get(f"/v1/referrals/{rid}/details", headers=bearer(token))).status_code


async def test_a_renewal_keeps_an_engaged_case_past_the_old_expiry_and_an_unrenewed_one_shreds(
    plat: Platform, db: asyncpg.Connection, client: httpx.AsyncClient
) -> None:
    now = datetime.now(UTC)
    soon = now + timedelta(seconds=25)
    ids = []
    for i, first in enumerate(("Renewanda", "Lapsandra")):
        body = referral_body(
            youth=youth(first, "Consentino", date.today() - timedelta(days=20 * 365 + i), f"562-555-01{i}0"),
            consent={
                "obtained_at": (now - timedelta(days=700)).isoformat(),
                "expires_at": soon.isoformat(),
                "method": "written",
                "scope": ["case_management"],
            },
        )
        ids.append(await post_referral(client, plat.partner_key(7), **body))
    renewed, lapsed = ids
    tokens = {}
    for rid in ids:
        _, tokens[rid] = await accept(client, db, plat, rid)
        r = await client.post(
            f"/v1/referrals/{rid}/contact", json={"method": "phone"}, headers=bearer(tokens[rid])
        )
        assert r.status_code == 200 and r.json()["status"] == "engaged", r.text

    # Warned in-app before the expiry: once (the 7-day warning; the 30-day one is due at the same time).
    async def warned(rid: str) -> Any:
        return await db.fetch(
            "SELECT kind, data FROM notifications WHERE referral_id = $1 AND kind = 'consent_expiring'", rid
        )

    for rid in ids:
        rows = await wait_for(lambda rid=rid: warned(rid), timeout=15)
        assert len(rows) == 1
    state = await client.get(f"/v1/referrals/{renewed}/consent", headers=bearer(tokens[renewed]))
    assert (
        state.status_code == 200 and state.json()["status"] == "expiring" and state.json()["days_left"] == 1
    )

    # Only the case manager holding the case renews; the body follows the referral's consent rules.
    later = datetime.now(UTC) + timedelta(days=365)
    renewal = {
        "obtained_at": datetime.now(UTC).isoformat(),
        "expires_at": later.isoformat(),
        "method": "verbal",
        "scope": ["case_management", "evaluation"],
    }
    assert (
        await client.post(
            f"/v1/referrals/{renewed}/consent", json=renewal, headers=bearer(plat.partner_key(7))
        )
    ).status_code == 403
    bad = await client.post(
        f"/v1/referrals/{renewed}/consent",
        json={**renewal, "scope": ["evaluation"]},
        headers=bearer(tokens[renewed]),
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "scope"
    r = await client.post(f"/v1/referrals/{renewed}/consent", json=renewal, headers=bearer(tokens[renewed]))
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "active" and r.json()["days_left"] >= 364 and r.json()["renewals"] == 1
    audited = await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'consent.renew' AND target_id = $1", renewed
    )
    assert audited == 1

    # Past the old expiry: the unrenewed case lost the youth's details, the renewed one did not.
    await asyncio.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()))
    await wait_for(
        lambda: db.fetchval("SELECT pii_shredded_at IS NOT NULL FROM referrals WHERE id = $1", lapsed),
        timeout=15,
    )
    assert await _details(client, tokens[lapsed], lapsed) == 410
    # The blind indexes go with the details (refnet_forget_youth): nothing links this youth any more.
    blind = "SELECT count(*) FROM youth_blind WHERE referral_id = $1"
    assert await db.fetchval(blind, lapsed) == 0 and await db.fetchval(blind, renewed) == 1
    await asyncio.sleep(2)  # a couple more sweeps
    assert await _details(client, tokens[renewed], renewed) == 200
    row = await db.fetchrow("SELECT status, pii_shredded_at FROM referrals WHERE id = $1", renewed)
    assert row is not None and row["status"] == "engaged" and row["pii_shredded_at"] is None
    assert await db.fetchval("SELECT count(*) FROM referral_keys WHERE referral_id = $1", renewed) == 1
    # The renewed consent is a year away: no new warning.
    assert len(await warned(renewed)) == 1
