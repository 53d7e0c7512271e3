"""Case lifecycle through the running services: first contact, services, outcomes, closing, the partner's
closed loop (and everything it must not show), follow-up reminders, evaluation exports, the simulator."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from refnet_dev.simulate import simulate
from services.intake.evaluation.cohort import report_from_database
from services.intake.evaluation.html import render_html
from shared.db import service_dsn
from tests.support.platform import Platform, referral_body, wait_for

PROBLEM = "application/problem+json"
NAME = "Lifecyclandra"
# What a partner's status view may hold: routing facts, dates, the close reason. Nothing else.
VIEW_KEYS = {
    "id",
    "status",
    "region",
    "needs",
    "urgency",
    "received_at",
    "updated_at",
    "assigned_at",
    "accepted_at",
    "closed_at",
    "outcome",
    "unroutable_reason",
    "engaged_at",
    "close_reason",
    "do_not_contact",
}


@dataclass
class Case:
    id: str
    assignment_id: str
    cm: dict[str, Any]
    cm_token: str
    partner_key: str


@pytest.fixture(scope="module")
async def env(platform: Platform) -> AsyncIterator[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=20) as client:
        db = await asyncpg.connect(platform.dsn)
        creds = platform.creds
        tokens = {cm["id"]: platform.staff_token(cm) for cm in creds["case_managers"]}
        sup = {s["region"]: platform.staff_token(s) for s in creds["supervisors"]}
        yield {
            "client": client,
            "db": db,
            "platform": platform,
            "tokens": tokens,
            "sup": sup,
            "evaluator": platform.staff_token(creds["evaluators"][0]),
            "admin": platform.staff_token(creds["admins"][0]),
        }
        await db.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_case(env: dict[str, Any], partner: int = 2, accept: bool = True, **body: Any) -> Case:
    client: httpx.AsyncClient = env["client"]
    platform: Platform = env["platform"]
    key = platform.partner_key(partner)
    payload = referral_body(**body)
    payload["youth"]["first_name"] = NAME
    r = await client.post("/v1/referrals", json=payload, headers=bearer(key))
    assert r.status_code == 201, r.text
    rid = r.json()["id"]

    async def offered() -> tuple[dict[str, Any], str] | None:
        for cm in platform.creds["case_managers"]:
            items = (
                await client.get("/v1/assignments?state=offered", headers=bearer(env["tokens"][cm["id"]]))
            ).json()
            for item in items["items"]:
                if item["referral_id"] == rid:
                    return cm, item["id"]
        return None

    cm, aid = await wait_for(offered, timeout=20, interval=0.1)
    case = Case(rid, aid, cm, env["tokens"][cm["id"]], key)
    if accept:
        r = await client.post(f"/v1/assignments/{aid}/accept", headers=bearer(case.cm_token))
        assert r.status_code == 200, r.text
    return case


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    return body


async def active(env: dict[str, Any], cm_id: str) -> int:
    return int(
        await env["db"].fetchval(
            "SELECT active_count FROM case_managers WHERE staff_id = $1", uuid.UUID(cm_id)
        )
    )


async def test_a_case_from_offer_to_close(env: dict[str, Any]) -> None:
    client: httpx.AsyncClient = env["client"]
    hook = {"url": "http://127.0.0.1:9/refnet-lifecycle-hook", "events": ["referral.status_changed"]}
    r = await client.post("/v1/webhooks", json=hook, headers=bearer(env["platform"].partner_key(2)))
    assert r.status_code == 201, r.text
    case = await new_case(env, accept=False)
    cm = bearer(case.cm_token)
    url = f"/v1/referrals/{case.id}"

    # Before acceptance: contact and close are illegal, and the 409 says what is allowed instead.
    body = problem(await client.post(f"{url}/contact", headers=cm), 409)
    assert (body["current"], body["requested"], body["allowed"]) == (
        "assigned",
        "engaged",
        ["accepted", "withdrawn"],
    )
    assert body["type"].endswith("/illegal-transition")
    problem(await client.post(f"{url}/close", json={"reason": "goals_met"}, headers=cm), 409)
    intervention = {"type": "therapy", "delivered_on": "2026-01-01"}
    problem(await client.post(f"{url}/interventions", json=intervention, headers=cm), 409)

    assert (await client.post(f"/v1/assignments/{case.assignment_id}/accept", headers=cm)).status_code == 200
    problem(
        await client.post(
            f"{url}/outcomes",
            json={
                "followup": "intake",
                "observed_on": "2026-01-01",
                "source": "youth_self_report",
                "safety": "safe",
            },
            headers=cm,
        ),
        409,
    )

    r = await client.post(f"{url}/contact", json={"method": "in_person"}, headers=cm)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "engaged" and r.json()["engaged_at"]
    body = problem(await client.post(f"{url}/contact", headers=cm), 409)
    assert body["allowed"] == ["closed"]

    today = (await env["db"].fetchval("SELECT (now() AT TIME ZONE 'America/Los_Angeles')::date")).isoformat()
    partner_id = env["platform"].creds["partners"][1]["id"]
    for payload in (
        {"type": "therapy", "delivered_on": today, "provider": partner_id, "duration": "PT50M"},
        {"type": "housing_placement", "delivered_on": today, "duration": "P90D"},
        {"type": "case_management", "delivered_on": today, "provider": "external"},
    ):
        r = await client.post(f"{url}/interventions", json=payload, headers=cm)
        assert r.status_code == 201, r.text
        assert r.json()["type"] == payload["type"]
    assert r.json()["provider"] == "external"
    for bad in (
        {"type": "therapy", "delivered_on": "2999-01-01"},
        {"type": "therapy", "delivered_on": "2001-01-01"},
        {"type": "astrology", "delivered_on": today},
        {"type": "therapy", "delivered_on": today, "provider": str(uuid.uuid4())},
        {"type": "therapy", "delivered_on": today, "duration": "-PT5M"},
        {"type": "therapy", "delivered_on": today, "notes": "free text is not accepted"},
    ):
        problem(await client.post(f"{url}/interventions", json=bad, headers=cm), 422)
    listed = await client.get(f"{url}/interventions", headers=cm)
    assert [i["type"] for i in listed.json()["items"]] == ["therapy", "housing_placement", "case_management"]
    assert [i.get("duration") for i in listed.json()["items"]] == ["PT3000S", "P90D", None]  # normalised

    outcome = {
        "followup": "intake",
        "observed_on": today,
        "source": "youth_self_report",
        "housing_stability": "unstable",
        "safety": "at_risk",
        "re_arrest": "no",
    }
    r = await client.post(f"{url}/outcomes", json=outcome, headers=cm)
    assert r.status_code == 201, r.text
    assert sorted(o["measure"] for o in r.json()["items"]) == ["housing_stability", "re_arrest", "safety"]
    again = problem(await client.post(f"{url}/outcomes", json=outcome, headers=cm), 409)
    assert again["recorded"] == ["housing_stability", "re_arrest", "safety"]
    problem(
        await client.post(
            f"{url}/outcomes",
            json={**outcome, "followup": "m3", "housing_stability": None, "safety": None, "re_arrest": None},
            headers=cm,
        ),
        422,
    )
    schedule = (await client.get(f"{url}/outcomes", headers=cm)).json()["followups"]
    assert [f["followup"] for f in schedule] == ["intake", "m3", "m6", "m12", "m24"]
    assert schedule[0]["completed_at"] and "completed_at" not in schedule[1]

    # The partner's closed loop: status and dates, never case details.
    partner = bearer(case.partner_key)
    view = (await client.get(url, headers=partner)).json()
    assert view["status"] == "engaged" and view["engaged_at"]
    for path in ("interventions", "outcomes", "history"):
        problem(await client.get(f"{url}/{path}", headers=partner), 403)

    before = await active(env, case.cm["id"])
    problem(await client.post(f"{url}/close", json={"reason": "graduated"}, headers=cm), 422)
    r = await client.post(f"{url}/close", json={"reason": "goals_met"}, headers=cm)
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["close_reason"], r.json()["outcome"]) == (
        "closed",
        "goals_met",
        "services_completed",
    )
    assert await active(env, case.cm["id"]) == before - 1, "closing frees the case manager's capacity"
    body = problem(await client.post(f"{url}/close", json={"reason": "other"}, headers=cm), 409)
    assert body["allowed"] == []
    # Follow-ups go on after closing.
    r = await client.post(f"{url}/outcomes", json={**outcome, "followup": "m3"}, headers=cm)
    assert r.status_code == 201, r.text

    view = (await client.get(url, headers=partner)).json()
    assert set(view) <= VIEW_KEYS
    assert (view["status"], view["close_reason"]) == ("closed", "goals_met")
    assert view["closed_at"] and view["engaged_at"] and view["accepted_at"]
    listing = await client.get("/v1/referrals?limit=100", headers=partner)
    text = view.__repr__() + listing.text
    for secret in (
        NAME,
        "Quellmorrow",
        "323-555-0199",
        "Vermont",
        "therapy",
        "housing_placement",
        "PT50M",
        "at_risk",
        "youth_self_report",
    ):
        assert secret not in text, f"the partner's view leaks {secret!r}"

    history = (await client.get(f"{url}/history", headers=cm)).json()["items"]
    assert [(h["from_status"], h["to_status"], h["actor_role"]) for h in history] == [
        ("received", "assigned", "system"),
        ("assigned", "accepted", "case_manager"),
        ("accepted", "engaged", "case_manager"),
        ("engaged", "closed", "case_manager"),
    ]
    assert [h["fhir_task_status"] for h in history] == ["requested", "accepted", "in-progress", "completed"]
    assert history[-1]["reason"] == "goals_met"

    # Who else may look: supervisors of the region read, others see nothing.
    assert (
        await client.get(f"{url}/interventions", headers=bearer(env["sup"]["south_la"]))
    ).status_code == 200
    problem(await client.get(f"{url}/interventions", headers=bearer(env["sup"]["san_fernando_valley"])), 404)
    other = next(t for cid, t in env["tokens"].items() if cid != case.cm["id"])
    problem(await client.get(f"{url}/outcomes", headers=bearer(other)), 404)
    problem(await client.post(f"{url}/interventions", json=payload, headers=bearer(other)), 404)
    problem(await client.get(f"{url}/interventions", headers=bearer(env["evaluator"])), 403)

    # The closed loop's events: notify turned engaged and closed into webhook deliveries for the partner.
    async def announced() -> set[str]:
        rows = await env["db"].fetch(
            "SELECT payload->'data'->>'status' AS status FROM deliveries WHERE referral_id = $1"
            " AND kind = 'referral.status_changed'",
            uuid.UUID(case.id),
        )
        found = {str(r["status"]) for r in rows}
        return found if {"engaged", "closed"} <= found else set()

    assert {"assigned", "accepted", "engaged", "closed"} <= await wait_for(
        announced, timeout=20, interval=0.2
    )


async def test_accepted_case_closed_without_contact_and_withdrawal_stops(env: dict[str, Any]) -> None:
    client: httpx.AsyncClient = env["client"]
    case = await new_case(env, partner=3)
    r = await client.post(
        f"/v1/referrals/{case.id}/close", json={"reason": "lost_contact"}, headers=bearer(case.cm_token)
    )
    assert r.status_code == 200, r.text
    assert r.json()["outcome"] == "youth_disengaged"

    case = await new_case(env, partner=3)
    r = await client.post(f"/v1/referrals/{case.id}/consent/withdraw", headers=bearer(case.partner_key))
    assert r.json()["status"] == "withdrawn"
    reason = await env["db"].fetchval(
        "SELECT reason FROM referral_transitions WHERE referral_id = $1 AND to_status = 'withdrawn'",
        uuid.UUID(case.id),
    )
    assert reason == "consent_withdrawn"

    async def gone() -> bool:
        r = await client.post(f"/v1/referrals/{case.id}/contact", headers=bearer(case.cm_token))
        return r.status_code == 404  # routing cancelled the assignment: no longer theirs

    await wait_for(gone, timeout=15, interval=0.2)


async def test_do_not_contact_and_follow_up_reminder(env: dict[str, Any]) -> None:
    client: httpx.AsyncClient = env["client"]
    body = referral_body()
    body["youth"]["do_not_contact"] = True
    case = await new_case(env, partner=4, youth=body["youth"])
    partner = bearer(case.partner_key)
    view = (await client.get(f"/v1/referrals/{case.id}", headers=partner)).json()
    assert view["do_not_contact"] is True
    r = await client.post(
        f"/v1/referrals/{case.id}/contact-preference", json={"do_not_contact": "yes"}, headers=partner
    )
    problem(r, 422)
    r = await client.post(
        f"/v1/referrals/{case.id}/contact-preference", json={"do_not_contact": False}, headers=partner
    )
    assert r.status_code == 200 and "do_not_contact" not in r.json()
    r = await client.post(
        f"/v1/referrals/{case.id}/contact-preference",
        json={"do_not_contact": True},
        headers=bearer(case.cm_token),
    )
    assert r.json()["do_not_contact"] is True
    problem(
        await client.post(
            f"/v1/referrals/{case.id}/contact-preference",
            json={"do_not_contact": True},
            headers=bearer(env["platform"].partner_key(5)),
        ),
        404,
    )

    r = await client.post(f"/v1/referrals/{case.id}/contact", headers=bearer(case.cm_token))
    assert r.status_code == 200, r.text

    # The intake follow-up is due today: intake's sweep reminds the case manager once, in-app.
    async def reminded() -> list[dict[str, Any]]:
        items = (await client.get("/v1/notifications?limit=200", headers=bearer(case.cm_token))).json()[
            "items"
        ]
        return [n for n in items if n["kind"] == "followup_due" and n["referral_id"] == case.id]

    [note] = await wait_for(reminded, timeout=20, interval=0.2)
    assert note["data"]["followup"] == "intake"
    assert note["data"]["do_not_contact"] is True
    event_id = await env["db"].fetchval(
        "SELECT reminder_event_id FROM followups WHERE referral_id = $1 AND point = 'intake'",
        uuid.UUID(case.id),
    )
    assert event_id is not None

    # notify consumes the same event (for email) and writes no second in-app row.
    async def consumed() -> bool:
        return bool(
            await env["db"].fetchval(
                "SELECT count(*) FROM processed_messages WHERE consumer = 'notify' AND event_id = $1",
                event_id,
            )
        )

    await wait_for(consumed, timeout=20, interval=0.2)
    assert await env["db"].fetchval("SELECT count(*) FROM notifications WHERE event_id = $1", event_id) == 1


async def test_evaluation_export_and_report(env: dict[str, Any]) -> None:
    client: httpx.AsyncClient = env["client"]
    evaluator = bearer(env["evaluator"])
    first = await client.get("/v1/evaluation/export?format=csv", headers=evaluator)
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("text/csv")
    assert first.headers["cache-control"] == "no-store"
    second = await client.get("/v1/evaluation/export", headers=bearer(env["admin"]))
    rows1 = list(csv.DictReader(io.StringIO(first.text)))
    rows2 = list(csv.DictReader(io.StringIO(second.text)))
    assert rows1 and len(rows1) == len(rows2)
    assert not {r["pid"] for r in rows1} & {r["pid"] for r in rows2}, "pseudonyms never repeat across exports"
    referral_ids = {str(r["id"]) for r in await env["db"].fetch("SELECT id FROM referrals")}
    for secret in (NAME, "Quellmorrow", "90011", "323-555", *referral_ids):
        assert secret not in first.text
    as_json = await client.get("/v1/evaluation/export?format=json", headers=evaluator)
    assert as_json.json()["pseudonyms"] == "per-export"
    assert len(as_json.json()["rows"]) == len(rows1)
    problem(await client.get("/v1/evaluation/export?format=xml", headers=evaluator), 422)

    report = await client.get("/v1/evaluation/report", headers=evaluator)
    assert report.status_code == 200, report.text
    doc = report.json()
    assert {
        "referrals_by_source",
        "time_to_first_contact",
        "recidivism_by_family",
        "outcomes_by_followup",
    } <= set(doc)
    for role in ("partner", "cm"):
        token = env["platform"].partner_key(0) if role == "partner" else next(iter(env["tokens"].values()))
        problem(await client.get("/v1/evaluation/report", headers=bearer(token)), 403)
        problem(await client.get("/v1/evaluation/export", headers=bearer(token)), 403)
    audited = await env["db"].fetch(
        "SELECT action, actor_role, detail FROM audit_log WHERE action LIKE 'evaluation.%' ORDER BY id"
    )
    assert [(a["action"], a["actor_role"]) for a in audited] == [
        ("evaluation.export", "evaluator"),
        ("evaluation.export", "admin"),
        ("evaluation.export", "evaluator"),
        ("evaluation.report", "evaluator"),
    ]


async def test_zz_simulate_then_report(env: dict[str, Any], tmp_path: Any) -> None:
    """A small pilot through the real API, backdated; then the HTML report from the database."""
    platform: Platform = env["platform"]
    summary = await simulate(
        platform.base_url, platform.creds, platform.dsn, south=6, valley=2, seed=5, log=lambda _: None
    )
    assert summary.referrals == 8
    assert summary.interventions > 0 and summary.outcomes > 0
    db: asyncpg.Connection = env["db"]
    oldest = await db.fetchval("SELECT min(received_at) FROM referrals")
    newest_case = await db.fetchval("SELECT max(delivered_on) FROM interventions")
    assert oldest < await db.fetchval("SELECT now() - interval '60 days'"), "history reaches back in time"
    assert newest_case is not None
    # Backdated histories stay consistent: every transition follows the referral's receipt.
    assert not await db.fetchval(
        "SELECT count(*) FROM referral_transitions t JOIN referrals r ON r.id = t.referral_id WHERE t.at < r.received_at"
    )
    # The simulated minors' protocol clocks moved with their receipt, their steps were played (issue 18),
    # and deadlines long past count as escalated then: no flood of alerts once the pilot is loaded.
    assert await db.fetchval("SELECT count(*) FROM protocol_steps WHERE completed_at IS NOT NULL") > 0
    assert not await db.fetchval(
        "SELECT count(*) FROM protocol_steps s JOIN referrals r ON r.id = s.referral_id"
        " WHERE s.clock_from = 'receipt' AND s.due_at <> r.received_at + make_interval(mins => s.clock_minutes)"
    )
    assert not await db.fetchval(
        "SELECT count(*) FROM protocol_steps WHERE due_at < now() - interval '1 day' AND escalated_at IS NULL"
        " AND (completed_at IS NULL OR completed_at > due_at)"
    )
    with pytest.raises(RuntimeError, match="already"):
        await simulate(platform.base_url, platform.creds, platform.dsn, south=1, valley=0, log=lambda _: None)

    report = await report_from_database(service_dsn(platform.dsn))
    assert report.provenance and "Synthetic" in report.provenance[0]
    html = render_html(report)
    assert "<svg" in html and "About this data" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html, "works offline"
    assert NAME not in html and "Demo0" not in html
