"""The web app in a real browser (headless Chromium): live offers, acceptance, the case page, the
supervisor's queue, the admin dashboard changing, every page checked by axe-core and photographed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from refnet_dev.embedded import EmbeddedPostgres, free_port
from shared.regions import default_catalogue
from tests.conftest import SEEDED_TEMPLATE, clone_database
from tests.e2e.browser import check_a11y, snap
from tests.support.platform import Platform, referral_body, running_platform

pytestmark = pytest.mark.usefixtures("browser_present")


@pytest.fixture(scope="module")
def web(
    pg_server: EmbeddedPostgres, seeded_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    dsn = asyncio.run(clone_database(pg_server, "w", SEEDED_TEMPLATE))
    extra = {
        "REFNET_ROUTING_METRICS_PORT": str(free_port()),
        "REFNET_NOTIFY_METRICS_PORT": str(free_port()),
    }
    with running_platform(dsn, tmp_path_factory.mktemp("web"), seeded_template, extra_env=extra) as plat:
        yield plat


async def _context(browser: Any, web: Platform, **kw: Any) -> Any:
    # bypass_csp: only so the test can inject axe-core as an inline script; the app's CSP forbids it.
    return await browser.new_context(base_url=web.base_url, bypass_csp=True, **kw)


async def _login(page: Any, person: dict[str, Any]) -> None:
    await page.goto("/app/login")
    await page.get_by_label("Email").fill(person["email"])
    await page.get_by_label("Password").fill(person["password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()


def _person(web: Platform, kind: str, **match: Any) -> dict[str, Any]:
    for p in web.creds[kind]:
        if all(p.get(k) == v for k, v in match.items()):
            return dict(p)
    raise AssertionError(f"no {kind} matching {match}")


def _zip(region: str) -> str:
    return sorted(next(r for r in default_catalogue().regions if r.code == region).zips)[0]


async def _post_referral(web: Platform, **overrides: Any) -> str:
    async with httpx.AsyncClient(base_url=web.base_url, timeout=10) as client:
        r = await client.post(
            "/v1/referrals",
            json=referral_body(**overrides),
            headers={"Authorization": f"Bearer {web.partner_key(6)}"},
        )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _status_count(page: Any, status: str) -> int:
    loc = page.locator(f'#status-counts [data-status="{status}"]')
    return int(await loc.inner_text()) if await loc.count() else 0


async def test_login_page_language_and_bad_password(web: Platform, browser: Any) -> None:
    ctx = await _context(browser, web)
    page = await ctx.new_page()
    await page.goto("/app/")
    assert "/app/login" in page.url
    await snap(page, "01-login")
    await check_a11y(page, "login")
    await page.get_by_label("Email").fill("nobody@demo.refnet.local")
    await page.get_by_label("Password").fill("wrong-password")
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
    assert await page.get_by_role("alert").inner_text() == "The email or password is not correct."
    await page.get_by_role("link", name="Español").click()
    await page.wait_for_load_state()
    assert await page.locator("html").get_attribute("lang") == "es"
    assert await page.get_by_role("heading", level=1).inner_text() == "Iniciar sesión"
    await snap(page, "02-login-es")
    await check_a11y(page, "login (es)")
    await ctx.close()


async def test_offer_arrives_live_is_accepted_and_dashboard_counts_change(
    web: Platform, browser: Any
) -> None:
    admin_ctx = await _context(browser, web)
    admin = await admin_ctx.new_page()
    await _login(admin, web.creds["admins"][0])
    assert admin.url.endswith("/app/dashboard")
    total_before = int(await admin.locator("#total-referrals").inner_text())
    # The case is accepted, then engaged by the first contact below: count both.
    taken_before = await _status_count(admin, "accepted") + await _status_count(admin, "engaged")

    # Jin Park is the only case manager who speaks Korean (San Fernando Valley): the offer is his.
    cm_ctx = await _context(browser, web)
    cm = await cm_ctx.new_page()
    await _login(cm, _person(web, "case_managers", name="Jin Park"))
    assert cm.url.endswith("/app/inbox")
    await cm.wait_for_selector('#live-status[data-state="on"]', timeout=10_000)
    await snap(cm, "03-inbox-empty")
    await check_a11y(cm, "inbox")
    await cm.evaluate("window.__sameDocument = true")

    rid = await _post_referral(
        web, location={"zip": _zip("san_fernando_valley")}, language="ko", urgency="urgent"
    )
    card = cm.locator(f'li.offer[data-referral="{rid}"]')
    await card.wait_for(timeout=15_000)
    assert await cm.evaluate("window.__sameDocument === true"), "the inbox reloaded instead of updating live"
    countdown = card.locator(".countdown")
    first = await countdown.inner_text()
    await cm.wait_for_function(
        "([el, before]) => el.textContent !== before",
        arg=[await countdown.element_handle(), first],
        timeout=5_000,
    )
    assert "m" in first
    await snap(cm, "04-inbox-live-offer")
    await check_a11y(cm, "inbox with an offer")

    await card.get_by_role("button", name="Accept").click()
    await cm.wait_for_load_state()
    assert "You accepted the referral." in await cm.locator(".flash").inner_text()
    row = cm.locator(f'#caseload tr[data-referral="{rid}"]')
    await row.wait_for()
    await snap(cm, "05-inbox-accepted")
    await row.get_by_role("link").click()
    await cm.wait_for_load_state()
    assert await cm.locator("#youth-details").is_visible()
    assert "Zyxwandra" in await cm.locator("#youth-details").inner_text()
    await snap(cm, "06-case")
    await check_a11y(cm, "case page")

    conn = await asyncpg.connect(web.dsn)
    try:
        audited = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'pii.read' AND target_id = $1", rid
        )
    finally:
        await conn.close()
    assert audited >= 1, "viewing the case page must be audited"

    # Case work through the lifecycle API: first contact, then an intervention and follow-up outcomes.
    await cm.get_by_label("How you made contact").select_option("phone")
    await cm.get_by_role("button", name="Record first contact").click()
    await cm.wait_for_load_state()
    assert await cm.locator(".flash").inner_text() == "Saved."
    await cm.get_by_label("Service").select_option("therapy")
    await cm.get_by_label("Duration in minutes (optional)").fill("50")
    await cm.get_by_role("button", name="Record").first.click()
    await cm.wait_for_load_state()
    assert "therapy" in await cm.locator("#interventions").inner_text()
    await cm.get_by_label("housing").select_option("stable")
    await cm.get_by_label("safety").select_option("safe")
    await cm.locator("#add-out-h + input + .field").wait_for()
    await cm.locator("form[action$='/outcomes'] button").click()
    await cm.wait_for_load_state()
    assert "safe" in await cm.locator("#outcomes").inner_text()
    await snap(cm, "06b-case-work")
    await check_a11y(cm, "case page with case work")

    # The dashboard refreshes itself: no reload, the counts move.
    await admin.bring_to_front()
    await admin.evaluate("window.__sameDocument = true")
    await admin.wait_for_function(
        "([total, taken]) => {"
        " const t = parseInt(document.querySelector('#total-referrals').textContent, 10);"
        " const n = (s) => { const e = document.querySelector(`#status-counts [data-status=${s}]`);"
        "   return e ? parseInt(e.textContent, 10) : 0; };"
        " return t > total && n('accepted') + n('engaged') > taken; }",
        arg=[total_before, taken_before],
        timeout=30_000,
    )
    assert await admin.evaluate("window.__sameDocument === true")
    await snap(admin, "07-dashboard")
    await check_a11y(admin, "dashboard")
    await admin_ctx.close()
    await cm_ctx.close()


async def test_supervisor_queue_explanation_manual_assignment(web: Platform, browser: Any) -> None:
    # Nobody in South LA speaks Korean: the referral waits in the South LA supervisor's queue.
    rid = await _post_referral(web, location={"zip": _zip("south_la")}, language="ko")
    ctx = await _context(browser, web)
    page = await ctx.new_page()
    await _login(page, _person(web, "supervisors", region="south_la"))
    assert page.url.endswith("/app/queue")
    link = page.locator(f'#queue tr[data-referral="{rid}"] a')
    for _ in range(50):
        if await link.count():
            break
        await asyncio.sleep(0.2)
        await page.reload()
    await snap(page, "08-queue")
    await check_a11y(page, "queue")
    await link.click()
    await page.wait_for_load_state()
    await snap(page, "09-queue-item")
    await check_a11y(page, "queue item")
    assert (
        "Korean" in await page.locator("#explain-summary").inner_text()
        or await page.locator(".decision").count()
    )
    await page.locator("#cm").select_option(index=0)
    await page.get_by_label("Reason").fill("Interpreter arranged for the first meeting.")
    await page.get_by_role("button", name="Assign").click()
    await page.wait_for_load_state()
    assert "offered to the case manager" in await page.locator(".flash").inner_text()
    assert await page.locator(f'#queue tr[data-referral="{rid}"]').count() == 0
    await page.goto("/app/team")
    await snap(page, "10-team")
    await check_a11y(page, "team")
    await page.goto("/app/map")
    await snap(page, "11-map-supervisor")
    await check_a11y(page, "map (supervisor)")
    await ctx.close()


async def test_an_offer_reassigned_by_a_supervisor_leaves_the_inbox_live(web: Platform, browser: Any) -> None:
    jin = _person(web, "case_managers", name="Jin Park")
    ctx = await _context(browser, web)
    cm = await ctx.new_page()
    await _login(cm, jin)
    await cm.wait_for_selector('#live-status[data-state="on"]', timeout=10_000)
    await cm.evaluate("window.__sameDocument = true")
    rid = await _post_referral(web, location={"zip": _zip("san_fernando_valley")}, language="ko")
    card = cm.locator(f'li.offer[data-referral="{rid}"]')
    await card.wait_for(timeout=15_000)

    # The region's supervisor gives it to someone else (API, as the queue page does).
    sup = _person(web, "supervisors", region="san_fernando_valley")
    other = next(
        c
        for c in web.creds["case_managers"]
        if "san_fernando_valley" in c["regions"] and c["id"] != jin["id"]
    )
    async with httpx.AsyncClient(base_url=web.base_url, timeout=10) as client:
        token = (
            await client.post("/v1/auth/token", json={"email": sup["email"], "password": sup["password"]})
        ).json()["access_token"]
        r = await client.post(
            f"/v1/admin/referrals/{rid}/assign",
            json={"case_manager_id": other["id"], "reason": "Interpreter arranged; closer to the family."},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert r.status_code == 201, r.text

    await card.wait_for(state="detached", timeout=15_000)
    assert await cm.evaluate("window.__sameDocument === true"), "the inbox reloaded instead of updating live"
    await cm.wait_for_function(
        "(text) => document.getElementById('announcer').textContent === text",
        arg="An offer was given to someone else.",
        timeout=5_000,
    )
    await ctx.close()


async def test_admin_pages_keys_and_map(web: Platform, browser: Any) -> None:
    ctx = await _context(browser, web)
    page = await ctx.new_page()
    await _login(page, web.creds["admins"][0])
    for path, name in (
        ("/app/roster", "12-roster"),
        ("/app/partners", "13-partners"),
        ("/app/map", "14-map"),
    ):
        await page.goto(path)
        await snap(page, name)
        await check_a11y(page, name)
    # Roster: change a case manager's capacity through the routing admin API, then add one.
    marcus = _person(web, "case_managers", name="Marcus Hill")
    await page.goto("/app/roster")
    await page.get_by_role("link", name="Marcus Hill").click()
    await page.wait_for_load_state()
    await snap(page, "12b-roster-edit")
    await check_a11y(page, "roster edit")
    await page.get_by_label("Capacity").fill("9")
    await page.get_by_role("button", name="Save").click()
    await page.wait_for_load_state()
    assert await page.locator(".flash").inner_text() == "The profile was saved."
    row = page.locator("#roster tr", has_text=marcus["email"])
    assert "/9" in await row.inner_text()
    await page.goto("/app/roster/new")
    await page.get_by_label("Full name").fill("Rosa Test")
    await page.get_by_label("Email").fill("rosa.test@demo.refnet.local")
    await page.get_by_label("housing").check()
    await page.get_by_role("button", name="Create").click()
    await page.wait_for_load_state()
    assert len(await page.locator("#new-password").inner_text()) >= 12
    partner = web.creds["partners"][1]
    await page.goto(f"/app/partners/{partner['id']}")
    await page.get_by_label("Label for the new key").fill("browser test")
    await page.get_by_role("button", name="Issue key").click()
    await page.wait_for_load_state()
    key = await page.locator("#new-key").inner_text()
    assert key.startswith("rnk_")
    await snap(page, "15-partner-keys")
    await check_a11y(page, "partner keys")
    async with httpx.AsyncClient(base_url=web.base_url) as client:
        assert (
            await client.get("/v1/referrals", headers={"Authorization": f"Bearer {key}"})
        ).status_code == 200
    # The key is shown once: reloading the page does not show it again.
    await page.goto(f"/app/partners/{partner['id']}")
    assert await page.locator("#new-key").count() == 0
    # Revoking asks first, then the key stops working at once.
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    row = page.locator("#keys tr", has_text="browser test")
    await row.locator("summary").click()
    await row.get_by_label("Reason for revoking").fill("test over")
    await row.get_by_role("button", name="Revoke", exact=True).click()
    await page.wait_for_load_state()
    assert await page.locator(".flash").inner_text() == "The key was revoked."
    async with httpx.AsyncClient(base_url=web.base_url) as client:
        assert (
            await client.get("/v1/referrals", headers={"Authorization": f"Bearer {key}"})
        ).status_code == 401
    await ctx.close()


async def test_phone_spanish_inbox_and_session_cookie(web: Platform, browser: Any) -> None:
    ctx = await _context(browser, web, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = await ctx.new_page()
    await page.goto("/app/lang/es?next=/app/login")
    cm = _person(web, "case_managers", name="Ana Reyes")
    await page.get_by_label("Correo electrónico").fill(cm["email"])
    await page.get_by_label("Contraseña").fill(cm["password"])
    await page.get_by_role("button", name="Entrar").click()
    await page.wait_for_load_state()
    assert await page.get_by_role("heading", level=1).inner_text() == "Bandeja"
    await snap(page, "16-inbox-phone-es")
    await check_a11y(page, "inbox (phone, es)")
    cookies = {c["name"]: c for c in await ctx.cookies()}
    session = cookies["refnet_session"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/app"
    # A form post without the CSRF token is refused, even with a valid session.
    both = {"Cookie": f"refnet_session={session['value']}; refnet_csrf={cookies['refnet_csrf']['value']}"}
    only_session = {"Cookie": f"refnet_session={session['value']}"}
    async with httpx.AsyncClient(base_url=web.base_url) as client:
        r = await client.post("/app/logout", headers=both, data={"_csrf": "forged"})
        assert r.status_code == 403
        # The page stream is the notification stream, authenticated by the cookie alone.
        async with client.stream("GET", "/app/events", headers=only_session, timeout=5) as resp:
            assert resp.status_code == 200
            assert resp.headers["content-type"].startswith("text/event-stream")
        # Without a session, pages send people to sign in; the API wants its Bearer token, not cookies.
        r = await client.get("/app/inbox")
        assert r.status_code == 303
        assert r.headers["location"].startswith("/app/login")
        assert (await client.get("/v1/assignments", headers=only_session)).status_code == 401
    await ctx.close()


async def test_a_supervisor_assigns_an_out_of_area_referral_from_the_queue_page(
    web: Platform, browser: Any
) -> None:
    # Out of area: no region owns it, so the San Fernando Valley supervisor sees it in their queue too and
    # gives it to one of their case managers from its page, with a reason (audited).
    rid = await _post_referral(web, location={"zip": "10001"})
    sup = _person(web, "supervisors", region="san_fernando_valley")
    ctx = await _context(browser, web)
    page = await ctx.new_page()
    await _login(page, sup)
    link = page.locator(f'#queue tr[data-referral="{rid}"] a')
    for _ in range(50):
        if await link.count():
            break
        await asyncio.sleep(0.2)
        await page.reload()
    await link.click()
    await page.wait_for_load_state()
    body = await page.locator("main").inner_text()
    sentence = "The referral's location is outside every region the network serves"
    assert body.count(sentence) == 1, "the explanation must be said once"
    await snap(page, "17-queue-out-of-area")
    await check_a11y(page, "queue item (out of area)")
    options = await page.locator("#cm option").all_inner_texts()
    valley = {c["name"] for c in web.creds["case_managers"] if c["regions"] == ["san_fernando_valley"]}
    assert options and all(any(name in o for name in valley) for o in options), options
    await page.get_by_label("Reason").fill("Family moved to Pacoima last week; closest team.")
    await page.get_by_role("button", name="Assign").click()
    await page.wait_for_load_state()
    assert "offered to the case manager" in await page.locator(".flash").inner_text()
    conn = await asyncpg.connect(web.dsn)
    try:
        status = await conn.fetchval("SELECT status FROM referrals WHERE id = $1", rid)
        audited = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'routing.manual_assign' AND target_id = $1"
            " AND actor_id = $2",
            rid,
            sup["id"],
        )
        reason = await conn.fetchval(
            "SELECT reason FROM routing_decisions WHERE referral_id = $1 AND kind = 'manual'", rid
        )
        # The words are sealed with the referral's data key (issue 14); the decision names the note.
        note = await conn.fetchval(
            "SELECT kind FROM referral_notes WHERE id::text = $1", reason.removeprefix("sealed-note:")
        )
    finally:
        await conn.close()
    assert (status, audited) == ("assigned", 1)
    assert reason.startswith("sealed-note:") and note == "manual_assignment_reason"
    await page.goto(f"/app/queue/{rid}")
    assert "Family moved to Pacoima last week; closest team." in await page.content()
    await ctx.close()
