"""The child-protection protocol in a real browser (issue 18): the inbox shows a minor's next protocol
step counting down, the case page lists the five steps with live countdowns and completes them (time,
reference, note, outcome), in English and Spanish, axe-clean; the youth's contact preferences come
before any contact detail."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from refnet_dev.embedded import EmbeddedPostgres, free_port
from shared.regions import default_catalogue
from tests.conftest import SEEDED_TEMPLATE, clone_database
from tests.e2e.browser import check_a11y, snap
from tests.support.platform import Platform, referral_body, running_platform, wait_for

pytestmark = pytest.mark.usefixtures("browser_present")
CODES = ["hotline_report", "written_report", "advocate_response", "medical_exam_offered", "mdt_meeting"]


@pytest.fixture(scope="module")
def web(
    pg_server: EmbeddedPostgres, seeded_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    dsn = asyncio.run(clone_database(pg_server, "wp", SEEDED_TEMPLATE))
    extra = {
        "REFNET_ROUTING_METRICS_PORT": str(free_port()),
        "REFNET_NOTIFY_METRICS_PORT": str(free_port()),
    }
    with running_platform(dsn, tmp_path_factory.mktemp("webp"), seeded_template, extra_env=extra) as plat:
        yield plat


def _person(web: Platform, kind: str, **match: Any) -> dict[str, Any]:
    for p in web.creds[kind]:
        if all(p.get(k) == v for k, v in match.items()):
            return dict(p)
    raise AssertionError(f"no {kind} matching {match}")


def _zip(region: str) -> str:
    return sorted(next(r for r in default_catalogue().regions if r.code == region).zips)[0]


async def _login(page: Any, person: dict[str, Any]) -> None:
    await page.get_by_label("Email").fill(person["email"])
    await page.get_by_label("Password").fill(person["password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()


async def _refer(web: Platform, **overrides: Any) -> str:
    body = referral_body(location={"zip": _zip("san_fernando_valley")}, language="ko", **overrides)
    body["youth"]["date_of_birth"] = (datetime.now(UTC) - timedelta(days=15 * 365 + 40)).date().isoformat()
    async with httpx.AsyncClient(base_url=web.base_url, timeout=10) as client:
        r = await client.post(
            "/v1/referrals", json=body, headers={"Authorization": f"Bearer {web.partner_key(6)}"}
        )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_a_case_manager_completes_protocol_steps_in_the_web_app(web: Platform, browser: Any) -> None:
    jin = _person(web, "case_managers", name="Jin Park")
    ctx = await browser.new_context(base_url=web.base_url, bypass_csp=True)
    page = await ctx.new_page()
    await page.goto("/app/login")
    await _login(page, jin)
    rid = await _refer(
        web,
        contact={
            "safe_channel": "sms",
            "safe_times": "After 4 pm",
            "voicemail_ok": False,
            "notes": "Text only",
        },
    )
    card = page.locator(f'li.offer[data-referral="{rid}"]')
    await card.wait_for(timeout=20_000)
    # The offer already shows the child's next protocol deadline, counting down.
    nxt = card.locator(".protocol-next")
    assert await nxt.get_attribute("data-step") == "advocate_response"
    countdown = nxt.locator(".protocol-countdown")
    first = await countdown.inner_text()
    await page.wait_for_function(
        "([el, before]) => el.textContent !== before",
        arg=[await countdown.element_handle(), first],
        timeout=5_000,
    )
    # The safe contact preferences are on the offer (the channel and voicemail: no PII).
    assert "text message" in await card.locator(".safe-contact").inner_text()
    assert "Never leave a voicemail" in await card.locator(".safe-contact").inner_text()
    await check_a11y(page, "inbox with a minor's offer")
    await card.get_by_role("button", name="Accept").click()
    await page.wait_for_load_state()
    row = page.locator(f'#caseload tr[data-referral="{rid}"]')
    assert await row.locator(".protocol-next").get_attribute("data-step") == "advocate_response"
    await row.get_by_role("link").click()
    await page.wait_for_load_state()

    # The safe contact preferences come before any contact detail of the youth.
    assert await page.evaluate(
        "document.querySelector('#safe-contact').compareDocumentPosition(document.querySelector('#youth-details'))"
        " & Node.DOCUMENT_POSITION_FOLLOWING"
    )
    safe = await page.locator("#safe-contact").inner_text()
    assert "After 4 pm" in safe and "Text only" in safe and "Never leave a voicemail" in safe
    steps = page.locator("#protocol li.protocol-step")
    assert [await steps.nth(i).get_attribute("data-step") for i in range(await steps.count())] == CODES
    assert await page.locator("#step-advocate_response .protocol-countdown").count() == 1
    await snap(page, "p18-01-case-protocol")
    await check_a11y(page, "case page with the protocol")

    # The hotline report: its reference is required; recorded with the time and a note.
    step = page.locator("#step-hotline_report")
    await step.locator("summary").click()
    await step.get_by_label("Reference (required", exact=False).fill("LA-2026-55501")
    await step.get_by_label("Note (kept encrypted)").fill("Called at 10:05, spoke to the screener.")
    await step.get_by_role("button", name="Mark done").click()
    await page.wait_for_load_state()
    assert "Protocol step recorded." in await page.locator(".flash").inner_text()
    step = page.locator("#step-hotline_report")
    assert await step.get_attribute("data-status") == "done"
    assert await step.locator(".step-reference").inner_text() == "LA-2026-55501"

    # The medical exam, offered and accepted, at a time given in the form (the referral came in an hour
    # ago, as time would have it).
    db = await asyncpg.connect(web.admin_dsn)
    try:
        await db.execute(
            "UPDATE referrals SET received_at = received_at - interval '1 hour' WHERE id = $1", rid
        )
    finally:
        await db.close()
    step = page.locator("#step-medical_exam_offered")
    await step.locator("summary").click()
    await step.get_by_label("Outcome").select_option("accepted")
    exam_at = (datetime.now(UTC) - timedelta(minutes=30)).astimezone(_la()).replace(second=0, microsecond=0)
    await step.get_by_label("When it was done", exact=False).fill(exam_at.strftime("%Y-%m-%dT%H:%M"))
    await step.get_by_role("button", name="Mark done").click()
    await page.wait_for_load_state()
    step = page.locator("#step-medical_exam_offered")
    assert await step.get_attribute("data-status") == "done"
    await snap(page, "p18-02-case-steps-done")
    await check_a11y(page, "case page with steps done")

    db = await asyncpg.connect(web.admin_dsn)
    try:
        rows = await db.fetch(
            "SELECT code, completed_by, completed_at, outcome, has_reference FROM protocol_steps"
            " WHERE referral_id = $1 AND completed_at IS NOT NULL ORDER BY position",
            rid,
        )
    finally:
        await db.close()
    assert [(r["code"], str(r["completed_by"]), r["outcome"], r["has_reference"]) for r in rows] == [
        ("hotline_report", jin["id"], None, True),
        ("medical_exam_offered", jin["id"], "accepted", False),
    ]
    # The time given in the form (the agency's time zone) is the time recorded.
    assert rows[1]["completed_at"] == exam_at

    # In Spanish too.
    await page.goto(f"/app/lang/es?next=/app/cases/{rid}")
    await page.wait_for_load_state()
    assert await page.locator("#protocol-h").inner_text() == "Protocolo de protección infantil"
    await check_a11y(page, "case page with the protocol (es)")
    await snap(page, "p18-03-case-protocol-es")
    await ctx.close()

    # The admin dashboard shows compliance per region and step.
    ctx = await browser.new_context(base_url=web.base_url, bypass_csp=True)
    page = await ctx.new_page()
    await page.goto("/app/login")
    await _login(page, web.creds["admins"][0])
    await page.goto("/app/dashboard?window=24h")
    row = page.locator('#protocol-figures tr[data-region="san_fernando_valley"][data-step="hotline_report"]')
    assert int(await row.locator('[data-col="on_time"]').inner_text()) >= 1
    await snap(page, "p18-04-dashboard-protocol")
    await check_a11y(page, "dashboard with protocol compliance")
    await ctx.close()


def _la() -> Any:
    from shared.casework import LOCAL_TZ

    return LOCAL_TZ


async def test_an_adults_case_has_no_protocol_panel(web: Platform, browser: Any) -> None:
    async def offered(rid: str) -> Any:
        db = await asyncpg.connect(web.admin_dsn)
        try:
            return await db.fetchval(
                "SELECT 1 FROM assignments WHERE referral_id = $1 AND state = 'offered'", rid
            )
        finally:
            await db.close()

    body = referral_body(location={"zip": _zip("san_fernando_valley")}, language="ko")
    body["youth"]["date_of_birth"] = (datetime.now(UTC) - timedelta(days=20 * 365 + 40)).date().isoformat()
    async with httpx.AsyncClient(base_url=web.base_url, timeout=10) as client:
        r = await client.post(
            "/v1/referrals", json=body, headers={"Authorization": f"Bearer {web.partner_key(6)}"}
        )
    assert r.status_code == 201
    rid = str(r.json()["id"])
    await wait_for(lambda: offered(rid), timeout=20)
    ctx = await browser.new_context(base_url=web.base_url, bypass_csp=True)
    page = await ctx.new_page()
    await page.goto("/app/login")
    await _login(page, _person(web, "case_managers", name="Jin Park"))
    card = page.locator(f'li.offer[data-referral="{rid}"]')
    await card.wait_for(timeout=10_000)
    assert await card.locator(".protocol-next").count() == 0
    await card.get_by_role("button", name="Accept").click()
    await page.wait_for_load_state()
    await page.goto(f"/app/cases/{rid}")
    assert await page.locator("#protocol").count() == 0
    await ctx.close()


async def test_a_supervisor_completes_a_step_of_an_unroutable_child_from_its_queue_page(
    web: Platform, browser: Any
) -> None:
    # Out of area: nobody is offered it, so the supervisors (all of them) must see to the child's steps.
    body = referral_body(location={"zip": "10001"})
    body["youth"]["date_of_birth"] = (datetime.now(UTC) - timedelta(days=13 * 365 + 40)).date().isoformat()
    async with httpx.AsyncClient(base_url=web.base_url, timeout=10) as client:
        r = await client.post(
            "/v1/referrals", json=body, headers={"Authorization": f"Bearer {web.partner_key(6)}"}
        )
    assert r.status_code == 201, r.text
    rid = str(r.json()["id"])
    supervisor = web.creds["supervisors"][1]
    ctx = await browser.new_context(base_url=web.base_url, bypass_csp=True)
    page = await ctx.new_page()
    await page.goto("/app/login")
    await _login(page, supervisor)
    await page.goto(f"/app/queue/{rid}")
    steps = page.locator("#protocol li.protocol-step")
    await steps.first.wait_for(timeout=10_000)
    assert await steps.count() == 5
    await check_a11y(page, "queue page with a child's protocol")
    step = page.locator("#step-advocate_response")
    await step.locator("summary").click()
    await step.get_by_label("Note (kept encrypted)").fill("Advocate from the drop-in centre met them.")
    await step.get_by_role("button", name="Mark done").click()
    await page.wait_for_load_state()
    assert page.url.endswith(f"/app/queue/{rid}?msg=pr.saved"), page.url
    assert await page.locator("#step-advocate_response").get_attribute("data-status") == "done"
    await snap(page, "p18-05-queue-protocol")
    await ctx.close()
