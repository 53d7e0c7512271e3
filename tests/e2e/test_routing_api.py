"""Routing over real HTTP with the services as processes: case manager profiles, exhaustion to the
supervisor queue, manual assignment, the routing explanation, the queue draining after a profile change,
and the roster CLI. Each test keeps to its own partner so they do not disturb each other."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from tests.support.platform import ROOT, Platform, referral_body, wait_for

PROBLEM_JSON = "application/problem+json"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _cm(platform: Platform, name: str) -> dict[str, Any]:
    return next(c for c in platform.creds["case_managers"] if c["name"] == name)


def _supervisor(platform: Platform, region: str) -> dict[str, Any]:
    return next(s for s in platform.creds["supervisors"] if s["region"] == region)


async def _status(client: httpx.AsyncClient, platform: Platform, rid: str, partner: int) -> dict[str, Any]:
    r = await client.get(f"/v1/referrals/{rid}", headers=_auth(platform.partner_key(partner)))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_case_manager_profiles_admin_and_supervisor(platform: Platform) -> None:
    admin = _auth(platform.staff_token(platform.creds["admins"][0]))
    south = _auth(platform.staff_token(_supervisor(platform, "south_la")))
    email = f"new.{uuid.uuid4().hex[:8]}@example.org"
    body = {
        "email": email,
        "name": "Rosa Vega",
        "regions": ["south_la"],
        "needs": ["housing", "education"],
        "languages": ["en", "es"],
        "capacity": 6,
        "specialisms": ["minors_only"],
    }
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=10) as client:
        r = await client.post("/v1/admin/case-managers", json=body, headers=admin)
        assert r.status_code == 201, r.text
        created = r.json()
        assert (
            created["password"] and created["active_count"] == 0 and created["specialisms"] == ["minors_only"]
        )
        # The generated password works once shown.
        r = await client.post("/v1/auth/token", json={"email": email, "password": created["password"]})
        assert r.status_code == 200
        r = await client.post("/v1/admin/case-managers", json=body, headers=admin)
        assert r.status_code == 409
        for bad, field in (
            ({**body, "email": "x" + email, "regions": ["mars"]}, "regions"),
            ({**body, "email": "y" + email, "status": "away"}, "away_until"),
            ({**body, "email": "z" + email, "needs": ["flying"]}, "needs"),
            ({**body, "email": "w" + email, "surprise": 1}, "surprise"),
            ({**body, "email": "v" + email, "name": "Ro\u0000sa"}, "name"),
        ):
            r = await client.post("/v1/admin/case-managers", json=bad, headers=admin)
            assert r.status_code == 422, r.text
            assert r.headers["content-type"] == PROBLEM_JSON
            assert any(field in e["field"] for e in r.json()["errors"]), r.json()
        # Supervisors list their own region only, and may not create.
        r = await client.get("/v1/admin/case-managers", headers=south)
        assert r.status_code == 200
        listed = r.json()["items"]
        assert email in {c["email"] for c in listed}
        assert all("south_la" in c["regions"] for c in listed)
        assert (
            await client.get("/v1/admin/case-managers?region=san_fernando_valley", headers=south)
        ).status_code == 403
        assert (await client.post("/v1/admin/case-managers", json=body, headers=south)).status_code == 403
        # A supervisor changes availability and load; identity and regions are the admin's.
        cid = created["id"]
        r = await client.patch(
            f"/v1/admin/case-managers/{cid}",
            json={"status": "away", "away_until": "2099-01-31", "capacity": 9},
            headers=south,
        )
        assert r.status_code == 200, r.text
        assert (r.json()["status"], r.json()["away_until"], r.json()["capacity"]) == ("away", "2099-01-31", 9)
        r = await client.patch(f"/v1/admin/case-managers/{cid}", json={"status": "active"}, headers=south)
        assert (r.json()["status"], r.json()["away_until"]) == ("active", None)
        assert (
            await client.patch(
                f"/v1/admin/case-managers/{cid}", json={"regions": ["san_fernando_valley"]}, headers=south
            )
        ).status_code == 403
        valley_cm = _cm(platform, "Jin Park")["id"]
        assert (
            await client.patch(f"/v1/admin/case-managers/{valley_cm}", json={"capacity": 1}, headers=south)
        ).status_code == 404
        assert (await client.get(f"/v1/admin/case-managers/{valley_cm}", headers=south)).status_code == 404
        # Nobody else may touch profiles.
        for headers in (
            _auth(platform.partner_key(5)),
            _auth(platform.staff_token(_cm(platform, "Ana Reyes"))),
        ):
            assert (await client.get("/v1/admin/case-managers", headers=headers)).status_code == 403
        assert (await client.get("/v1/admin/case-managers")).status_code == 401
        # Out of the way of the other tests' routing.
        r = await client.patch(f"/v1/admin/case-managers/{cid}", json={"status": "inactive"}, headers=admin)
        assert r.status_code == 200


async def test_exhaustion_queue_manual_assignment_and_explanation(platform: Platform) -> None:
    partner = 6
    south_sup = _supervisor(platform, "south_la")
    south = _auth(platform.staff_token(south_sup))
    valley = _auth(platform.staff_token(_supervisor(platform, "san_fernando_valley")))
    cms = {c["id"]: c for c in platform.creds["case_managers"] if c["regions"] == ["south_la"]}
    tokens = {cid: platform.staff_token(c) for cid, c in cms.items()}
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=10) as client:
        r = await client.post(
            "/v1/referrals",
            json=referral_body(needs=["housing"], language="en"),
            headers=_auth(platform.partner_key(partner)),
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        declined: list[str] = []
        for _ in range(3):

            async def offered(declined: list[str] = declined) -> tuple[str, str] | None:
                for cid, tok in tokens.items():
                    if cid in declined:
                        continue
                    items = (await client.get("/v1/assignments?state=offered", headers=_auth(tok))).json()[
                        "items"
                    ]
                    match = next((a for a in items if a["referral_id"] == rid), None)
                    if match:
                        return cid, match["id"]
                return None

            cid, aid = await wait_for(offered)
            r = await client.post(
                f"/v1/assignments/{aid}/decline", json={"reason": "caseload full"}, headers=_auth(tokens[cid])
            )
            assert r.status_code == 200, r.text
            declined.append(cid)

        async def queued() -> bool:
            return bool((await _status(client, platform, rid, partner))["status"] == "unroutable")

        await wait_for(queued)
        view = await _status(client, platform, rid, partner)
        assert view["unroutable_reason"] == "offers_exhausted"

        r = await client.get("/v1/admin/queue", headers=south)
        assert r.status_code == 200
        item = next(i for i in r.json()["items"] if i["referral_id"] == rid)
        assert (item["reason"], item["failed_offers"], item["region"]) == ("offers_exhausted", 3, "south_la")
        assert rid not in {
            i["referral_id"] for i in (await client.get("/v1/admin/queue", headers=valley)).json()["items"]
        }
        assert (await client.get("/v1/admin/queue?region=south_la", headers=valley)).status_code == 403

        # By hand: to the one who has not declined, with a reason (required).
        target = next(cid for cid in cms if cid not in declined)
        url = f"/v1/admin/referrals/{rid}/assign"
        r = await client.post(url, json={"case_manager_id": target}, headers=south)
        assert r.status_code == 422
        # Text PostgreSQL cannot store is the client's 422, never a 500.
        r = await client.post(url, json={"case_manager_id": target, "reason": "bad\u0000byte"}, headers=south)
        assert r.status_code == 422
        assert (await client.get("/v1/admin/queue?region=%00", headers=south)).status_code == 422
        assert (
            await client.post(url, json={"case_manager_id": target, "reason": "mine"}, headers=valley)
        ).status_code == 404
        r = await client.post(
            url, json={"case_manager_id": target, "reason": "Speaks with the shelter daily."}, headers=south
        )
        assert r.status_code == 201, r.text
        assert r.json()["case_manager_id"] == target
        items = (await client.get("/v1/assignments?state=offered", headers=_auth(tokens[target]))).json()[
            "items"
        ]
        assert rid in {a["referral_id"] for a in items}
        assert (await _status(client, platform, rid, partner))["status"] == "assigned"

        # The explanation, in words.
        r = await client.get(f"/v1/referrals/{rid}/routing", headers=south)
        assert r.status_code == 200, r.text
        doc = r.json()
        target_name = cms[target]["name"]
        assert doc["summary"].startswith(f"Offered to {target_name}")
        first, *_, last = doc["decisions"]
        assert first["kind"] == "automatic" and first["summary"].startswith("Offered to ")
        assert "the best match of" in first["summary"] and "South Los Angeles" in first["summary"]
        assert any(line.startswith("Why ") for line in first["details"])
        exhausted = doc["decisions"][-2]
        assert exhausted["outcome"] == "offers_exhausted"
        assert "Offered 3 times without being accepted" in exhausted["summary"]
        assert last["kind"] == "manual"
        assert last["summary"] == f"Assigned by hand to {target_name} by Grace Okafor."
        assert "Reason given: Speaks with the shelter daily." in last["details"]
        assert [o["state"] for o in doc["offers"]] == ["declined", "declined", "declined", "offered"]
        # Partners, case managers and other regions' supervisors may not see it.
        assert (
            await client.get(f"/v1/referrals/{rid}/routing", headers=_auth(platform.partner_key(partner)))
        ).status_code == 403
        assert (
            await client.get(f"/v1/referrals/{rid}/routing", headers=_auth(tokens[target]))
        ).status_code == 403
        assert (await client.get(f"/v1/referrals/{rid}/routing", headers=valley)).status_code == 404
        admin = _auth(platform.staff_token(platform.creds["admins"][0]))
        assert (await client.get(f"/v1/referrals/{rid}/routing", headers=admin)).status_code == 200
    conn = await asyncpg.connect(platform.dsn)
    try:
        actions = [
            r["action"]
            for r in await conn.fetch("SELECT action FROM audit_log WHERE target_id = $1 ORDER BY id", rid)
        ]
    finally:
        await conn.close()
    assert "routing.manual_assign" in actions
    assert actions.count("routing.explanation_viewed") == 2


async def test_a_profile_change_drains_the_queue(platform: Platform) -> None:
    """Nobody in South LA speaks Korean: the referral waits; once a case manager lists Korean, the
    routing worker's periodic drain offers it to them without anyone asking."""
    partner = 7
    admin = _auth(platform.staff_token(platform.creds["admins"][0]))
    lucia = _cm(platform, "Lucia Gómez")
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=10) as client:
        r = await client.post(
            "/v1/referrals",
            json=referral_body(needs=["legal"], language="ko", urgency="urgent"),
            headers=_auth(platform.partner_key(partner)),
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]

        async def queued() -> bool:
            return bool((await _status(client, platform, rid, partner))["status"] == "unroutable")

        await wait_for(queued)
        assert (await _status(client, platform, rid, partner))[
            "unroutable_reason"
        ] == "no_eligible_case_manager"
        r = await client.get(f"/v1/referrals/{rid}/routing", headers=admin)
        assert "No case manager in South Los Angeles could take this referral" in r.json()["summary"]
        assert "does not speak Korean" in " ".join(r.json()["decisions"][0]["details"])

        r = await client.patch(
            f"/v1/admin/case-managers/{lucia['id']}", json={"languages": ["en", "es", "ko"]}, headers=admin
        )
        assert r.status_code == 200, r.text

        async def assigned() -> bool:
            return bool((await _status(client, platform, rid, partner))["status"] == "assigned")

        await wait_for(assigned, timeout=20)
        items = (
            await client.get("/v1/assignments?state=offered", headers=_auth(platform.staff_token(lucia)))
        ).json()
        assert rid in {a["referral_id"] for a in items["items"]}
        await client.patch(
            f"/v1/admin/case-managers/{lucia['id']}", json={"languages": ["en", "es"]}, headers=admin
        )


async def test_roster_cli_imports_and_lists(platform: Platform, tmp_path: Path) -> None:
    email = f"roster.{uuid.uuid4().hex[:8]}@example.org"
    csv_path = tmp_path / "roster.csv"
    csv_path.write_text(
        "email,name,regions,needs,languages,capacity,specialisms\n"
        f"{email},Imani Brooks,san_fernando_valley,housing;peer_support,en;es,7,boys_young_men\n"
    )
    out = tmp_path / "passwords.csv"
    env = {**platform.env, "REFNET_DATABASE_URL": platform.dsn}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "refnet.cli", "roster", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    bad = tmp_path / "bad.csv"
    bad.write_text("email,name,regions,needs,capacity\nx@example.org,X,atlantis,housing,3\n")
    done = await asyncio.to_thread(cli, "import", str(bad))
    assert done.returncode == 1
    assert "line 2: regions: unknown region atlantis" in done.stderr
    done = await asyncio.to_thread(cli, "import", str(csv_path), "--passwords-out", str(out))
    assert done.returncode == 0, done.stderr
    assert "created 1, updated 0" in done.stdout
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    line = out.read_text().strip()
    assert line.startswith(email + ",")
    password = line.split(",", 1)[1]
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=10) as client:
        r = await client.post("/v1/auth/token", json={"email": email, "password": password})
        assert r.status_code == 200
    done = await asyncio.to_thread(cli, "list", "--region", "san_fernando_valley")
    assert done.returncode == 0, done.stderr
    assert email in done.stdout and "south_la" not in done.stdout


async def _offered(client: httpx.AsyncClient, tokens: dict[str, str], rid: str) -> tuple[str, str]:
    """Wait until routing offered ``rid`` to one of these case managers: (case manager id, assignment id)."""

    async def find() -> tuple[str, str] | None:
        for cid, tok in tokens.items():
            items = (await client.get("/v1/assignments?state=offered", headers=_auth(tok))).json()["items"]
            match = next((a for a in items if a["referral_id"] == rid), None)
            if match:
                return cid, match["id"]
        return None

    found: tuple[str, str] = await wait_for(find, timeout=30)
    return found


async def test_manual_assignment_is_routings_write(platform: Platform) -> None:
    """A supervisor's manual assignment goes to routing as a command and comes back with routing's answer:
    the refusals keep their status, text and field; the assignment is audited once, as the supervisor,
    with the decision record routing wrote in the same transaction."""
    partner = 8
    sup = _supervisor(platform, "south_la")
    south = _auth(platform.staff_token(sup))
    admin = _auth(platform.staff_token(platform.creds["admins"][0]))
    cms = {c["id"]: c for c in platform.creds["case_managers"] if c["regions"] == ["south_la"]}
    tokens = {cid: platform.staff_token(c) for cid, c in cms.items()}
    db = await asyncpg.connect(platform.dsn)
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=10) as client:
        try:
            r = await client.post(
                "/v1/referrals", json=referral_body(), headers=_auth(platform.partner_key(partner))
            )
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
            holder, first_offer = await _offered(client, tokens, rid)
            url = f"/v1/admin/referrals/{rid}/assign"
            inactive = await client.post(
                "/v1/admin/case-managers",
                json={
                    "email": f"manual.{uuid.uuid4().hex[:8]}@example.org",
                    "name": "Manual Inactive",
                    "regions": ["south_la"],
                    "needs": ["housing"],
                    "capacity": 0,
                    "status": "inactive",
                },
                headers=admin,
            )
            assert inactive.status_code == 201, inactive.text

            async def refused(body: dict[str, Any], status: int, detail: str, field: str | None) -> None:
                r = await client.post(url, json={"reason": "Knows the family.", **body}, headers=south)
                assert r.status_code == status, r.text
                assert r.headers["content-type"] == PROBLEM_JSON
                problem = r.json()
                assert problem["detail"] == detail, problem
                if field is None:
                    assert "errors" not in problem, problem
                else:
                    assert problem["errors"] == [{"field": field, "message": detail}], problem

            await refused(
                {"case_manager_id": holder},
                409,
                "The referral is already offered to that case manager.",
                None,
            )
            await refused(
                {"case_manager_id": inactive.json()["id"]},
                409,
                "That case manager is inactive; make them active first.",
                None,
            )
            await refused(
                {"case_manager_id": str(uuid.uuid4())}, 422, "No such case manager.", "case_manager_id"
            )
            r = await client.post(
                url, json={"case_manager_id": "nobody", "reason": "Knows them."}, headers=south
            )
            assert r.status_code == 422, r.text
            assert r.json()["errors"] == [{"field": "case_manager_id", "message": "not a case manager id"}]
            r = await client.post(
                f"/v1/admin/referrals/{uuid.uuid4()}/assign",
                json={"case_manager_id": holder, "reason": "Knows them."},
                headers=south,
            )
            assert (r.status_code, r.json()["detail"]) == (404, "No such referral."), r.text
            # Refusals wrote nothing: no audit record, the original offer still open.
            assert not await db.fetchval(
                "SELECT count(*) FROM audit_log WHERE action = 'routing.manual_assign' AND target_id = $1",
                rid,
            )
            assert (
                await db.fetchval("SELECT state FROM assignments WHERE id = $1", uuid.UUID(first_offer))
                == "offered"
            )

            target = next(cid for cid in cms if cid != holder)
            r = await client.post(
                url, json={"case_manager_id": target, "reason": "  Met her at the shelter.  "}, headers=south
            )
            assert r.status_code == 201, r.text
            done = r.json()
            assert (done["referral_id"], done["case_manager_id"]) == (rid, target)
            assert set(done) == {
                "assignment_id",
                "referral_id",
                "case_manager_id",
                "respond_by",
                "over_capacity",
                "active_count",
                "capacity",
                "warnings",
                "decision_id",
            }
            audits = await db.fetch(
                "SELECT actor_role, actor_id, target_type, detail FROM audit_log"
                " WHERE action = 'routing.manual_assign' AND target_id = $1",
                rid,
            )
            assert len(audits) == 1
            audit = audits[0]
            assert (audit["actor_role"], audit["actor_id"], audit["target_type"]) == (
                "supervisor",
                sup["id"],
                "referral",
            )
            assert _jsonb(audit["detail"]) == {
                "case_manager_id": target,
                "decision_id": done["decision_id"],
                "over_capacity": done["over_capacity"],
                "previous_status": "assigned",
            }
            decision = await db.fetchrow(
                "SELECT kind, outcome, chosen_id, actor_id, reason FROM routing_decisions WHERE id = $1",
                uuid.UUID(done["decision_id"]),
            )
            assert decision is not None
            assert (decision["kind"], decision["outcome"], str(decision["chosen_id"])) == (
                "manual",
                "assigned",
                target,
            )
            # The words may describe the youth: sealed with the referral's data key (issue 14), by id here.
            assert str(decision["actor_id"]) == sup["id"]
            assert decision["reason"].startswith("sealed-note:") and "shelter" not in decision["reason"]
            note = await db.fetchrow(
                "SELECT kind, written_by FROM referral_notes WHERE id = $1",
                uuid.UUID(decision["reason"].removeprefix("sealed-note:")),
            )
            assert note is not None and (note["kind"], str(note["written_by"])) == (
                "manual_assignment_reason",
                sup["id"],
            )
            states: dict[str, str] = {
                r["id"]: r["state"]
                for r in await db.fetch(
                    "SELECT id::text, state FROM assignments WHERE referral_id = $1", uuid.UUID(rid)
                )
            }
            assert states == {first_offer: "cancelled", done["assignment_id"]: "offered"}

            # Once accepted, the referral is no longer routing's to move.
            r = await client.post(
                f"/v1/assignments/{done['assignment_id']}/accept", headers=_auth(tokens[target])
            )
            assert r.status_code == 200, r.text
            await refused(
                {"case_manager_id": holder},
                409,
                "The referral is accepted; only a waiting or offered referral can be assigned by hand.",
                None,
            )
        finally:
            await db.close()


def _jsonb(value: Any) -> Any:
    """A jsonb column as Python values (the test connection has no jsonb codec: it reads text)."""
    return json.loads(value) if isinstance(value, str) else value


async def test_manual_assignment_without_routing_is_503_and_changes_nothing(platform: Platform) -> None:
    """Routing not answering: 503 with Retry-After, and nothing assigned (it stays the client's to retry)."""
    partner = 8
    south = _auth(platform.staff_token(_supervisor(platform, "south_la")))
    cms = {c["id"]: c for c in platform.creds["case_managers"] if c["regions"] == ["south_la"]}
    tokens = {cid: platform.staff_token(c) for cid, c in cms.items()}
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=20) as client:
        r = await client.post(
            "/v1/referrals", json=referral_body(), headers=_auth(platform.partner_key(partner))
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        holder, _ = await _offered(client, tokens, rid)
        target = next(cid for cid in cms if cid != holder)
        body = {"case_manager_id": target, "reason": "Routing is away."}
        platform.terminate("routing")
        try:
            r = await client.post(f"/v1/admin/referrals/{rid}/assign", json=body, headers=south)
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == PROBLEM_JSON
            assert int(r.headers["retry-after"]) > 0
        finally:
            platform.restart("routing")
        db = await asyncpg.connect(platform.dsn)
        try:
            assert not await db.fetchval(
                "SELECT count(*) FROM assignments WHERE referral_id = $1 AND case_manager_id = $2",
                uuid.UUID(rid),
                uuid.UUID(target),
            )
        finally:
            await db.close()

        # Back: the same request now succeeds.
        async def assigned() -> bool:
            r = await client.post(f"/v1/admin/referrals/{rid}/assign", json=body, headers=south)
            assert r.status_code in (201, 503), r.text
            return r.status_code == 201

        await wait_for(assigned, timeout=30, interval=0.5)
