"""Child-protection protocol through the running services (issue 18, contract v1.1): a 15-year-old's
referral gets the five CSEC steps with due times from the shipped file, a 20-year-old's none; who may
read and complete them; a completion's reference and note sealed as PII; advocate_response past its
clock escalates once to the case manager and the region's supervisors, across a kill -9 of notify and
any number of sweeps; completing it late records done_late."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.platform import Platform, referral_body, wait_for

CODES = ["hotline_report", "written_report", "advocate_response", "medical_exam_offered", "mdt_meeting"]
SOUTH_PARTNER = 0


@pytest.fixture(scope="module")
async def env(platform: Platform) -> AsyncIterator[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=30) as client:
        db = await asyncpg.connect(platform.dsn)
        tokens: dict[str, str] = {}
        creds = platform.creds
        for person in (
            *creds["case_managers"],
            *creds["supervisors"],
            creds["admins"][0],
            creds["evaluators"][0],
        ):
            r = await client.post(
                "/v1/auth/token", json={"email": person["email"], "password": person["password"]}
            )
            tokens[person["email"]] = r.json()["access_token"]
        try:
            yield {"client": client, "db": db, "platform": platform, "tokens": tokens}
        finally:
            await db.close()


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _dob(years: int) -> str:
    return (datetime.now(UTC) - timedelta(days=years * 365 + 40)).date().isoformat()


async def _refer(env: dict[str, Any], age: int) -> str:
    body = referral_body()
    body["youth"]["date_of_birth"] = _dob(age)
    r = await env["client"].post(
        "/v1/referrals", json=body, headers=_auth(env["platform"].partner_key(SOUTH_PARTNER))
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _offered(env: dict[str, Any], rid: str) -> tuple[str, str, str]:
    """(assignment id, case manager id, their token) once routing offered the referral."""

    async def offered() -> tuple[str, str, str] | None:
        row = await env["db"].fetchrow(
            "SELECT a.id, a.case_manager_id, s.email FROM assignments a JOIN staff s ON s.id = a.case_manager_id"
            " WHERE a.referral_id = $1 AND a.state = 'offered'",
            rid,
        )
        return (str(row["id"]), str(row["case_manager_id"]), env["tokens"][row["email"]]) if row else None

    result: tuple[str, str, str] = await wait_for(offered, timeout=20)
    return result


def _supervisor(env: dict[str, Any], region: str) -> dict[str, Any]:
    return next(s for s in env["platform"].creds["supervisors"] if s["region"] == region)


async def test_a_15_year_old_gets_the_five_steps_and_a_20_year_old_none(env: dict[str, Any]) -> None:
    client: httpx.AsyncClient = env["client"]
    minor = await _refer(env, 15)
    received = await env["db"].fetchval("SELECT received_at FROM referrals WHERE id = $1", minor)
    _, _, cm_token = await _offered(env, minor)
    r = await client.get(f"/v1/referrals/{minor}/protocol", headers=_auth(cm_token))
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["protocol_version"]
    steps = {s["code"]: s for s in doc["steps"]}
    assert list(steps) == CODES
    for s in doc["steps"]:
        assert {"code", "status", "due_at", "completed_at", "completed_by"} <= set(s)
        assert s["status"] == "open" and s["completed_at"] is None and s["completed_by"] is None

    def due(code: str) -> datetime:
        return datetime.fromisoformat(steps[code]["due_at"])

    assert due("written_report") == received + timedelta(hours=36)
    assert due("advocate_response") == received + timedelta(minutes=90)
    assert due("medical_exam_offered") == received + timedelta(hours=72)

    # The region's supervisor and an admin read them; a partner and the other region's supervisor are
    # answered as if the referral did not exist; an evaluator's role may not (403).
    south, valley = _supervisor(env, "south_la"), _supervisor(env, "san_fernando_valley")
    for token in (env["tokens"][south["email"]], env["tokens"][env["platform"].creds["admins"][0]["email"]]):
        r = await client.get(f"/v1/referrals/{minor}/protocol", headers=_auth(token))
        assert r.status_code == 200 and [s["code"] for s in r.json()["steps"]] == CODES
    for headers in (
        _auth(env["platform"].partner_key(SOUTH_PARTNER)),
        _auth(env["tokens"][valley["email"]]),
    ):
        r = await client.get(f"/v1/referrals/{minor}/protocol", headers=headers)
        assert r.status_code == 404, r.text
        r = await client.post(f"/v1/referrals/{minor}/protocol/mdt_meeting", json={}, headers=headers)
        assert r.status_code == 404, r.text
    evaluator = _auth(env["tokens"][env["platform"].creds["evaluators"][0]["email"]])
    assert (await client.get(f"/v1/referrals/{minor}/protocol", headers=evaluator)).status_code == 403

    adult = await _refer(env, 20)
    _, _, adult_cm = await _offered(env, adult)
    r = await client.get(f"/v1/referrals/{adult}/protocol", headers=_auth(adult_cm))
    assert r.status_code == 200 and r.json()["steps"] == []
    assert await env["db"].fetchval("SELECT count(*) FROM protocol_steps WHERE referral_id = $1", adult) == 0


async def test_completing_steps_records_time_person_reference_and_a_sealed_note(env: dict[str, Any]) -> None:
    client: httpx.AsyncClient = env["client"]
    rid = await _refer(env, 15)
    _, cm_id, cm_token = await _offered(env, rid)
    url = f"/v1/referrals/{rid}/protocol"
    # Every offending field at once: the reference is required, the outcome coded, the time not ahead.
    ahead = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    r = await client.post(f"{url}/hotline_report", json={"completed_at": ahead}, headers=_auth(cm_token))
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["completed_at", "reference"]
    r = await client.post(f"{url}/medical_exam_offered", json={"outcome": "maybe"}, headers=_auth(cm_token))
    assert r.status_code == 422 and [e["field"] for e in r.json()["errors"]] == ["outcome"]
    r = await client.post(f"{url}/no_such_step", json={}, headers=_auth(cm_token))
    assert r.status_code == 404
    r = await client.post(f"{url}/hotline_report", json={"unknown": 1}, headers=_auth(cm_token))
    assert r.status_code == 422

    when = (datetime.now(UTC) + timedelta(seconds=1)).replace(microsecond=0)
    note = "Spoke with hotline worker Ms Vasquez-Orrin about Zyxwandra"
    r = await client.post(
        f"{url}/hotline_report",
        json={"completed_at": when.isoformat(), "reference": "LA-2026-88812", "note": note},
        headers=_auth(cm_token),
    )
    assert r.status_code == 200, r.text
    step = r.json()
    assert step["code"] == "hotline_report" and step["status"] == "done"
    assert datetime.fromisoformat(step["completed_at"]) == when and step["completed_by"] == cm_id
    r = await client.post(f"{url}/hotline_report", json={"reference": "again"}, headers=_auth(cm_token))
    assert r.status_code == 409

    # A supervisor of the region completes another (the file lets them) with a coded outcome.
    south = env["tokens"][_supervisor(env, "south_la")["email"]]
    r = await client.post(f"{url}/medical_exam_offered", json={"outcome": "accepted"}, headers=_auth(south))
    assert r.status_code == 200 and r.json()["status"] == "done" and r.json()["outcome"] == "accepted"

    # The note and reference are stored only sealed (never in plaintext), and the act audited.
    row = await env["db"].fetchrow(
        "SELECT * FROM protocol_steps WHERE referral_id = $1 AND code = 'hotline_report'", rid
    )
    dumped = repr(dict(row)).encode()
    assert (
        b"Vasquez" not in dumped and b"LA-2026" not in dumped and b"Vasquez" not in bytes(row["sealed_text"])
    )
    assert row["has_reference"] and row["has_note"] and str(row["completed_by"]) == cm_id
    audited = await env["db"].fetch(
        "SELECT actor_id, detail FROM audit_log WHERE action = 'protocol.complete' AND target_id = $1", rid
    )
    assert {a["actor_id"] for a in audited} == {cm_id, _supervisor(env, "south_la")["id"]}
    assert all("Vasquez" not in str(a["detail"]) for a in audited)

    # The case manager who has the referral reads them back (an audited PII read); a supervisor does not.
    r = await client.get(url, headers=_auth(cm_token))
    got = {s["code"]: s for s in r.json()["steps"]}
    assert got["hotline_report"]["reference"] == "LA-2026-88812" and got["hotline_report"]["note"] == note
    assert got["medical_exam_offered"]["status"] == "done"
    r = await client.get(url, headers=_auth(south))
    sup = {s["code"]: s for s in r.json()["steps"]}
    assert "note" not in sup["hotline_report"] and "reference" not in sup["hotline_report"]
    assert sup["hotline_report"]["has_note"] is True
    assert (
        await env["db"].fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'pii.read' AND target_id = $1 AND actor_id = $2",
            rid,
            cm_id,
        )
        >= 1
    )


async def _overdue_notes(env: dict[str, Any], rid: str) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await env["db"].fetch(
        "SELECT recipient_id, data FROM notifications WHERE referral_id = $1 AND kind = 'protocol_overdue'"
        " AND channel = 'inapp'",
        rid,
    )
    return rows


async def test_an_overdue_advocate_response_escalates_once_across_a_kill_of_notify(
    env: dict[str, Any],
) -> None:
    client: httpx.AsyncClient = env["client"]
    platform: Platform = env["platform"]
    db: asyncpg.Connection = env["db"]
    rid = await _refer(env, 15)
    _, cm_id, cm_token = await _offered(env, rid)
    south = _supervisor(env, "south_la")
    r = await client.get(f"/v1/referrals/{rid}/protocol", headers=_auth(cm_token))
    assert {s["code"]: s["status"] for s in r.json()["steps"]}["advocate_response"] == "open"

    # notify dies hard; then 90 minutes pass for this referral (its clock moved back, as time would).
    platform.kill("notify")
    await db.execute("UPDATE referrals SET received_at = received_at - interval '2 hours' WHERE id = $1", rid)
    await db.execute(
        "UPDATE protocol_steps SET due_at = due_at - interval '2 hours' WHERE referral_id = $1 AND due_at IS NOT NULL",
        rid,
    )
    # intake's sweep marks the step escalated and writes the event while notify is down.
    await wait_for(
        lambda: db.fetchval(
            "SELECT escalation_event_id FROM protocol_steps WHERE referral_id = $1 AND code = 'advocate_response'",
            rid,
        ),
        timeout=20,
    )
    assert await _overdue_notes(env, rid) == []
    r = await client.get(f"/v1/referrals/{rid}/protocol", headers=_auth(cm_token))
    assert {s["code"]: s["status"] for s in r.json()["steps"]}["advocate_response"] == "overdue"

    platform.restart("notify")

    async def told() -> set[str]:
        return {str(n["recipient_id"]) for n in await _overdue_notes(env, rid)}

    expected = {cm_id, south["id"]}
    await wait_for(lambda: _has(told, expected), timeout=30)
    # Several more sweeps (one a second in tests) and the step is still told of once per person.
    await asyncio.sleep(4)
    notes = await _overdue_notes(env, rid)
    assert sorted(str(n["recipient_id"]) for n in notes) == sorted(expected)
    datas = [json.loads(n["data"]) for n in notes]
    assert all(d["step"] == "advocate_response" for d in datas)
    # No PII in what notify wrote: the step's code and its due time only.
    assert all(set(d) == {"step", "due_at"} for d in datas)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM protocol_steps WHERE referral_id = $1 AND escalated_at IS NOT NULL", rid
        )
        == 1
    )

    # The case manager sees the notification through the API too.
    r = await client.get("/v1/notifications", headers=_auth(cm_token))
    assert r.status_code == 200, r.text
    mine = [n for n in r.json()["items"] if n["kind"] == "protocol_overdue" and n["referral_id"] == rid]
    assert len(mine) == 1 and mine[0]["data"]["step"] == "advocate_response"

    # The admin dashboard's figures count it as overdue in its region.
    admin = _auth(env["tokens"][platform.creds["admins"][0]["email"]])
    before = await _compliance(client, admin)
    assert before[("south_la", "advocate_response")]["overdue"] >= 1
    # ... and so does intake's Prometheus gauge (an operator's alert).
    url = platform.metrics_url("intake")
    assert url is not None
    async with httpx.AsyncClient(timeout=10) as scraper:
        text = (await scraper.get(url)).text
    gauge = 'refnet_protocol_steps{region="south_la",state="overdue",step="advocate_response"}'
    line = next(x for x in text.splitlines() if x.startswith(gauge))
    assert float(line.split()[-1]) >= 1

    # Completing it now is recorded as late.
    r = await client.post(f"/v1/referrals/{rid}/protocol/advocate_response", json={}, headers=_auth(cm_token))
    assert r.status_code == 200 and r.json()["status"] == "done_late", r.text
    r = await client.get(f"/v1/referrals/{rid}/protocol", headers=_auth(cm_token))
    assert {s["code"]: s["status"] for s in r.json()["steps"]}["advocate_response"] == "done_late"
    after = await _compliance(client, admin)
    got, was = after[("south_la", "advocate_response")], before[("south_la", "advocate_response")]
    assert (got["overdue"], got["late"]) == (was["overdue"] - 1, was["late"] + 1)
    # No further alert for the late completion, nor from any later sweep.
    await asyncio.sleep(2)
    assert len(await _overdue_notes(env, rid)) == len(expected)


async def _compliance(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> dict[tuple[str, str], dict[str, int]]:
    r = await client.get("/v1/admin/metrics?window=24h&fresh=true", headers=admin)
    assert r.status_code == 200, r.text
    return {(c["region"], c["step"]): c for c in r.json()["protocol_compliance"]}


async def _has(told: Any, expected: set[str]) -> bool:
    got: set[str] = await told()
    return expected <= got


CONTACT = {
    "safe_channel": "sms",
    "safe_times": "Weekdays 3-5 pm, never evenings",
    "voicemail_ok": False,
    "notes": "Aunt Quorra answers the landline: do not say who is calling",
}


async def test_contact_preferences_are_validated_sealed_and_read_by_the_case_manager(
    env: dict[str, Any],
) -> None:
    client: httpx.AsyncClient = env["client"]
    key = _auth(env["platform"].partner_key(SOUTH_PARTNER))
    # Every offending field of the contact object at once.
    bad = referral_body(contact={"safe_channel": "pigeon", "safe_times": "x" * 201, "voicemail_ok": "no"})
    r = await client.post("/v1/referrals", json=bad, headers=key)
    assert r.status_code == 422, r.text
    fields = {e["field"] for e in r.json()["errors"]}
    assert {"contact.safe_channel", "contact.safe_times", "contact.voicemail_ok"} <= fields, fields
    r = await client.post("/v1/referrals", json=referral_body(contact={"fax": "1"}), headers=key)
    assert r.status_code == 422

    r = await client.post("/v1/referrals", json=referral_body(contact=CONTACT), headers=key)
    assert r.status_code == 201, r.text
    rid = str(r.json()["id"])
    db: asyncpg.Connection = env["db"]
    row = await db.fetchrow("SELECT contact_channel, contact_voicemail_ok FROM referrals WHERE id = $1", rid)
    assert row is not None and (row["contact_channel"], row["contact_voicemail_ok"]) == ("sms", False)
    # The safe times and notes (PII) are nowhere in plaintext: only inside the sealed details.
    for table, column in (("referrals", "id"), ("referral_pii", "referral_id"), ("audit_log", "target_id")):
        dumped = await db.fetchval(
            f"SELECT coalesce(string_agg(t::text, ''), '') FROM {table} t WHERE {column}::text = $1", rid
        )
        assert "Quorra" not in dumped and "3-5 pm" not in dumped, table
    _, _, cm_token = await _offered(env, rid)
    r = await client.get(f"/v1/referrals/{rid}/details", headers=_auth(cm_token))
    assert r.status_code == 200, r.text
    assert r.json()["contact"] == CONTACT


async def test_the_evaluation_report_carries_protocol_figures_suppressed(env: dict[str, Any]) -> None:
    evaluator = _auth(env["tokens"][env["platform"].creds["evaluators"][0]["email"]])
    rid = await _refer(env, 14)
    _, _, cm_token = await _offered(env, rid)
    r = await env["client"].post(
        f"/v1/referrals/{rid}/protocol/advocate_response", json={}, headers=_auth(cm_token)
    )
    assert r.status_code == 200, r.text
    done = await env["db"].fetchval(
        "SELECT count(*) FROM protocol_steps WHERE code = 'advocate_response' AND completed_at IS NOT NULL"
    )
    assert 1 <= done <= 10  # this module completed one: a small count the report must not show
    r = await env["client"].get("/v1/evaluation/report", headers=evaluator, timeout=120)
    assert r.status_code == 200, r.text
    protocol = r.json()["protocol"]
    assert protocol["advocate_response"]["n"] == "suppressed"
    assert protocol["advocate_response"]["median_days"] is None
    assert set(protocol["exam_uptake"]) >= {"n", "events", "rate", "ci_low", "ci_high"}


async def test_after_the_youths_details_are_destroyed_no_note_can_be_kept(env: dict[str, Any]) -> None:
    client: httpx.AsyncClient = env["client"]
    rid = await _refer(env, 16)
    _, _, cm_token = await _offered(env, rid)
    r = await client.post(
        f"/v1/referrals/{rid}/protocol/hotline_report",
        json={"reference": "LA-1", "note": "before withdrawal"},
        headers=_auth(cm_token),
    )
    assert r.status_code == 200, r.text
    partner = _auth(env["platform"].partner_key(SOUTH_PARTNER))
    r = await client.post(f"/v1/referrals/{rid}/consent/withdraw", json={}, headers=partner)
    assert r.status_code == 200, r.text
    south = _auth(env["tokens"][_supervisor(env, "south_la")["email"]])
    # The steps stay (de-identified facts); a note or reference could no longer be sealed: refused.
    r = await client.get(f"/v1/referrals/{rid}/protocol", headers=south)
    assert r.status_code == 200 and len(r.json()["steps"]) == 5
    r = await client.post(f"/v1/referrals/{rid}/protocol/mdt_meeting", json={"note": "x"}, headers=south)
    assert r.status_code == 410, r.text
    assert await env["db"].fetchval("SELECT count(*) FROM referral_keys WHERE referral_id = $1", rid) == 0


async def test_a_null_contact_is_no_preference(env: dict[str, Any]) -> None:
    r = await env["client"].post(
        "/v1/referrals",
        json=referral_body(contact=None),
        headers=_auth(env["platform"].partner_key(SOUTH_PARTNER)),
    )
    assert r.status_code == 201, r.text
    row = await env["db"].fetchrow(
        "SELECT contact_channel, contact_voicemail_ok FROM referrals WHERE id = $1", r.json()["id"]
    )
    assert row is not None and (row["contact_channel"], row["contact_voicemail_ok"]) == (None, None)
