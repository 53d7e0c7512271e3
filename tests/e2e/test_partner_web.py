"""The partner pages and the referral form in a real browser (issue 17): a partner with no developer
submits a referral on a phone-width screen in Spanish, sees every refused field next to its field,
never makes two referrals with a double click, and sees the referral assigned; partners manage their
webhooks and keys and withdraw a referral; the agency's intake staff take a hotline referral; the case
manager sees the consent's days left and a possible match. Every page is checked by axe-core."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from refnet_dev.embedded import EmbeddedPostgres, free_port
from shared.casework import LOCAL_TZ
from tests.conftest import SEEDED_TEMPLATE, clone_database
from tests.e2e.browser import check_a11y, snap
from tests.support.platform import Platform, referral_body, running_platform, wait_for

pytestmark = pytest.mark.usefixtures("browser_present")
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}


@pytest.fixture(scope="module")
def web(
    pg_server: EmbeddedPostgres, seeded_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    dsn = asyncio.run(clone_database(pg_server, "pw", SEEDED_TEMPLATE))
    extra = {
        "REFNET_ROUTING_METRICS_PORT": str(free_port()),
        "REFNET_NOTIFY_METRICS_PORT": str(free_port()),
    }
    with running_platform(dsn, tmp_path_factory.mktemp("pweb"), seeded_template, extra_env=extra) as plat:
        yield plat


@pytest.fixture
async def db(web: Platform) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(web.dsn)
    yield conn
    await conn.close()


async def partner_session(browser: Any, web: Platform, partner: int, lang: str = "en", **kw: Any) -> Any:
    """A browser signed in as a partner. Until partner users (accounts, issue 14) sign in with a password,
    the session carries the partner's API key, which the pages treat exactly like a partner user."""
    ctx = await browser.new_context(base_url=web.base_url, bypass_csp=True, locale=lang, **kw)
    cookies = {
        "refnet_session": web.partner_key(partner),
        "refnet_csrf": secrets.token_urlsafe(24),
        "refnet_lang": lang,
    }
    await ctx.add_cookies(
        [{"name": k, "value": v, "url": web.base_url + "/app/"} for k, v in cookies.items()]
    )
    return ctx


async def login(browser: Any, web: Platform, person: dict[str, Any], **kw: Any) -> Any:
    ctx = await browser.new_context(base_url=web.base_url, bypass_csp=True, **kw)
    page = await ctx.new_page()
    await page.goto("/app/login")
    await page.get_by_label("Email").fill(person["email"])
    await page.get_by_label("Password").fill(person["password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
    return ctx, page


def local(moment: datetime) -> str:
    return moment.astimezone(LOCAL_TZ).strftime("%Y-%m-%dT%H:%M")


async def count_for(db: asyncpg.Connection, partner_id: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM referrals WHERE partner_id = $1", partner_id))


async def test_partner_submits_in_spanish_on_a_phone_every_error_by_its_field_and_no_double(
    web: Platform, browser: Any, db: asyncpg.Connection
) -> None:
    partner = web.creds["partners"][2]
    ctx = await partner_session(browser, web, 2, "es", **PHONE)
    page = await ctx.new_page()
    await page.goto("/app/")
    assert page.url.endswith("/app/partner/referrals")
    await page.goto("/app/referrals/new")
    assert await page.locator("html").get_attribute("lang") == "es"
    assert await page.get_by_role("heading", level=1).inner_text() == "Nueva referencia"
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    await snap(page, "p17-01-form-es-phone")
    await check_a11y(page, "referral form (es, phone)")

    # Sent empty: nothing is made, and each refused field says why, next to itself, in Spanish.
    before = await count_for(db, partner["id"])
    await page.get_by_role("button", name="Enviar referencia").click()
    await page.wait_for_load_state()
    assert "no se envió" in await page.get_by_role("alert").inner_text()
    first = page.locator("#f-youth-first_name")
    assert "Nombre" in await page.locator('label[for="f-youth-first_name"]').inner_text()
    assert await first.get_attribute("aria-invalid") == "true"
    described = await first.get_attribute("aria-describedby")
    assert described and "f-youth-first_name-error" in described
    assert "Escriba el nombre" in await page.locator("#f-youth-first_name-error").inner_text()
    for field in (
        "f-youth-date_of_birth",
        "f-location-zip",
        "f-needs",
        "f-consent-method",
        "f-consent-obtained_at",
        "f-consent-expires_at",
    ):
        assert await page.locator(f"#{field}-error").count() == 1, field
    await snap(page, "p17-02-form-errors-es-phone")
    await check_a11y(page, "referral form errors (es, phone)")
    assert await count_for(db, partner["id"]) == before

    # Filled in (what was typed stays), by keyboard where a person would use one.
    now = datetime.now(LOCAL_TZ)
    await first.fill("Marisol")
    await page.get_by_label("Apellido").fill("Ventanilla")
    await page.get_by_label("Fecha de nacimiento").fill((date.today() - timedelta(days=15 * 365)).isoformat())
    await page.get_by_label("Teléfono").fill("323-555-0188")
    await page.get_by_label("Código postal").fill("90011")
    housing = page.get_by_role("checkbox", name="vivienda")
    await housing.focus()
    await page.keyboard.press("Space")
    assert await housing.is_checked()
    await page.get_by_label("Cómo se dio el consentimiento").select_option("written")
    # The youth agreed that the partner may follow the referral's status (without it the partner sees
    # "received" only: the status is masked, see test_consent_scopes).
    await page.get_by_role("checkbox", name="compartir el estado de la referencia con quien refiere").check()
    await page.get_by_label("Consentimiento obtenido").fill(local(now - timedelta(hours=1)))
    await page.get_by_label("El consentimiento vence").fill(local(now + timedelta(days=365)))
    await page.get_by_label("Dónde conoció a la persona joven").select_option("faith_community")
    await page.get_by_label("Edad cuando fue explotada por primera vez").fill("13")
    # A double click on the button (or a page sent twice) makes one referral.
    await page.get_by_role("button", name="Enviar referencia").dblclick()
    await page.wait_for_url("**/app/partner/referrals**")
    await page.wait_for_load_state()
    assert await count_for(db, partner["id"]) == before + 1
    rid = str(
        await db.fetchval(
            "SELECT id FROM referrals WHERE partner_id = $1 ORDER BY received_at DESC LIMIT 1", partner["id"]
        )
    )
    intake = await db.fetchval("SELECT intake::text FROM referrals WHERE id = $1", rid)
    assert '"faith_community"' in intake and '"age_first_exploited": 13' in intake

    # ... and sees it offered to a case manager, the list updating by itself.
    row = page.locator(f'tr[data-referral="{rid}"]')
    await row.wait_for()
    await page.wait_for_function(
        f"document.querySelector('tr[data-referral=\"{rid}\"]').dataset.status === 'assigned'", timeout=20000
    )
    assert "ofrecida" in (await row.inner_text()).lower()
    await snap(page, "p17-03-partner-referrals-es-phone")
    await check_a11y(page, "partner referrals (es, phone)")
    # Resending the same form (say, the browser's back and send again) still makes no second referral.
    async with httpx.AsyncClient(base_url=web.base_url) as client:
        status = await client.get(
            f"/v1/referrals/{rid}", headers={"Authorization": f"Bearer {web.partner_key(2)}"}
        )
    assert status.json()["status"] == "assigned"
    await ctx.close()


async def test_partner_withdraws_and_manages_webhooks_and_keys(
    web: Platform, browser: Any, db: asyncpg.Connection
) -> None:
    async with httpx.AsyncClient(base_url=web.base_url) as client:
        r = await client.post(
            "/v1/referrals", json=referral_body(), headers={"Authorization": f"Bearer {web.partner_key(3)}"}
        )
    rid = r.json()["id"]
    ctx = await partner_session(browser, web, 3)
    page = await ctx.new_page()
    await page.goto("/app/partner/referrals")
    row = page.locator(f'tr[data-referral="{rid}"]')
    await row.locator("summary").click()
    await row.get_by_role("button", name="Confirm: consent withdrawn").click()
    await page.wait_for_load_state()
    assert "withdrawn" in await page.get_by_role("status").first.inner_text()
    assert await db.fetchval("SELECT status FROM referrals WHERE id = $1", rid) == "withdrawn"
    # Partners see statuses only: no case notes, interventions or anything of the youth.
    assert "Zyxwandra" not in await page.content()

    await page.goto("/app/partner/webhooks")
    await check_a11y(page, "partner webhooks")
    await page.get_by_label("Endpoint URL").fill("https://hooks.example.invalid/refnet")
    await page.get_by_role("checkbox", name="FHIR Task changes (task.updated)").check()
    await page.get_by_role("button", name="Add endpoint").click()
    await page.wait_for_load_state()
    # An address that does not resolve is refused (the API's rule), shown on the page.
    assert await page.get_by_role("alert").count() == 1
    await page.goto("/app/partner/keys")
    await page.get_by_label("Label").fill("intake laptop")
    await page.get_by_role("button", name="Make a new key").click()
    await page.wait_for_load_state()
    new_key = await page.locator("#new-api-key").inner_text()
    assert new_key.startswith("rnk_")
    async with httpx.AsyncClient(base_url=web.base_url) as client:
        ok = await client.get("/v1/referrals", headers={"Authorization": f"Bearer {new_key}"})
        assert ok.status_code == 200 and rid in ok.text
        kid = await db.fetchval("SELECT id FROM api_keys WHERE prefix = $1", new_key[:8])
        await check_a11y(page, "partner keys")
        await page.locator(f'tr[data-key="{kid}"]').get_by_role("button").click()
        await page.wait_for_load_state()
        assert (
            await client.get("/v1/referrals", headers={"Authorization": f"Bearer {new_key}"})
        ).status_code == 401
    audited = await db.fetchval(
        "SELECT count(*) FROM audit_log WHERE action IN ('apikey.create', 'apikey.revoke') AND target_id = $1",
        str(kid),
    )
    assert audited == 2
    # Staff pages stay closed to partners, and partner pages to staff.
    response = await page.goto("/app/inbox")
    assert response is not None and response.status == 403
    await ctx.close()
    staff_ctx, staff_page = await login(browser, web, web.creds["case_managers"][0])
    response = await staff_page.goto("/app/partner/referrals")
    assert response is not None and response.status == 403
    await staff_ctx.close()


async def test_hotline_intake_by_the_agencys_staff(
    web: Platform, browser: Any, db: asyncpg.Connection
) -> None:
    ctx, page = await login(browser, web, web.creds["intake_staff"][0])
    assert page.url.endswith("/app/referrals/new")
    assert await page.get_by_role("heading", level=1).inner_text() == "New hotline, walk-in or self-referral"
    await check_a11y(page, "hotline form")
    now = datetime.now(LOCAL_TZ)
    await page.get_by_label("First name").fill("Callista")
    await page.get_by_label("Date of birth").fill((date.today() - timedelta(days=18 * 365)).isoformat())
    await page.get_by_label("ZIP code").fill("91331")
    await page.get_by_role("checkbox", name="safety planning").check()
    await page.get_by_label("How consent was given").select_option("verbal")
    await page.get_by_label("Consent obtained").fill(local(now - timedelta(minutes=5)))
    await page.get_by_label("Consent expires").fill(local(now + timedelta(days=730)))
    await page.get_by_role("radio", name="hotline call").check()
    await page.get_by_role("button", name="Send referral").click()
    await page.wait_for_url("**/app/partner/referrals**")
    rid = await db.fetchval(
        "SELECT r.id FROM referrals r JOIN partners p ON p.id = r.partner_id"
        " WHERE p.kind = 'coordinating_agency' AND r.intake->>'referral_setting' = 'hotline' ORDER BY r.received_at DESC LIMIT 1"
    )
    assert rid is not None
    await page.locator(f'tr[data-referral="{rid}"]').wait_for()
    await check_a11y(page, "agency referrals")
    actor = await db.fetchval(
        "SELECT actor_role FROM referral_transitions WHERE referral_id = $1 ORDER BY id LIMIT 1", rid
    )
    assert actor is not None
    await ctx.close()


async def test_case_page_shows_consent_days_left_and_a_possible_match(
    web: Platform, browser: Any, db: asyncpg.Connection
) -> None:
    born = date.today() - timedelta(days=17 * 365 + 3)
    youth = {
        "first_name": "Ottilie",
        "last_name": "Brandvold",
        "date_of_birth": born.isoformat(),
        "phone": "818-555-0123",
    }
    now = datetime.now(LOCAL_TZ)
    consent = {
        "obtained_at": (now - timedelta(days=700)).isoformat(),
        "expires_at": (now + timedelta(days=20)).isoformat(),
        "method": "written",
        "scope": ["case_management"],
    }
    async with httpx.AsyncClient(base_url=web.base_url) as client:
        first = (
            await client.post(
                "/v1/referrals",
                json=referral_body(youth=youth, consent=consent, location={"zip": "91331"}),
                headers={"Authorization": f"Bearer {web.partner_key(4)}"},
            )
        ).json()["id"]
        cm_id = str(
            await wait_for(
                lambda: db.fetchval(
                    "SELECT case_manager_id FROM assignments WHERE referral_id = $1 AND state = 'offered'",
                    first,
                ),
                timeout=20,
            )
        )
        person = next(p for p in web.creds["case_managers"] if p["id"] == cm_id)
        token = web.staff_token(person)
        aid = await db.fetchval("SELECT id FROM assignments WHERE referral_id = $1", first)
        assert (
            await client.post(f"/v1/assignments/{aid}/accept", headers={"Authorization": f"Bearer {token}"})
        ).status_code == 200
        second = (
            await client.post(
                "/v1/referrals",
                json=referral_body(youth={**youth, "first_name": "Otilie"}, location={"zip": "91331"}),
                headers={"Authorization": f"Bearer {web.partner_key(5)}"},
            )
        ).json()["id"]
        await wait_for(
            lambda: db.fetchval(
                "SELECT 1 FROM assignments WHERE referral_id = $1 AND case_manager_id = $2", second, cm_id
            ),
            timeout=20,
        )
    ctx, page = await login(browser, web, person)
    await page.goto(f"/app/cases/{first}")
    panel = page.locator("#consent")
    assert await panel.get_attribute("data-consent-status") == "expiring"
    assert await panel.get_attribute("data-days-left") == "20"
    assert "20 days left" in await panel.inner_text()
    matches = page.locator("#matches")
    assert f"referral {second.split('-')[0]}" in await matches.inner_text()
    await snap(page, "p17-04-case-consent-match")
    await check_a11y(page, "case page with consent and match")
    await matches.get_by_role("button", name=f"Not the same: dismiss {second.split('-')[0]}").click()
    await page.wait_for_load_state()
    assert await db.fetchval("SELECT status FROM youth_matches WHERE referral_id = $1", second) == "dismissed"
    # Renewing from the page keeps the case going; the inbox shows the new days left.
    await page.get_by_text("Record a renewed consent").click()
    await page.get_by_label("Consent obtained").fill(local(datetime.now(LOCAL_TZ) - timedelta(minutes=1)))
    await page.get_by_label("Consent expires").fill(local(datetime.now(LOCAL_TZ) + timedelta(days=400)))
    await page.get_by_role("button", name="Save renewal").click()
    await page.wait_for_load_state()
    assert await page.locator("#consent").get_attribute("data-consent-status") == "active"
    await page.goto("/app/inbox")
    cell = page.locator(f'#caseload tr[data-referral="{first}"] .consent-left')
    assert await cell.get_attribute("data-days-left") in ("400", "399")
    await ctx.close()


async def test_a_partner_user_signs_in_and_refers(
    web: Platform, browser: Any, db: asyncpg.Connection
) -> None:
    """The same as a named partner user (accounts, issue 14: created by an admin through the contract's
    `POST /v1/admin/staff`), who signs in with a password of their own after the one-time one."""
    partner = web.creds["partners"][6]
    admin = web.staff_token(web.creds["admins"][0])
    email = f"referrer-{secrets.token_hex(4)}@partners.refnet.local"
    async with httpx.AsyncClient(base_url=web.base_url) as client:
        made = await client.post(
            "/v1/admin/staff",
            json={
                "email": email,
                "name": "Rita Referrer",
                "role": "partner_user",
                "partner_id": partner["id"],
            },
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert made.status_code == 201, made.text
        once = made.json()["password"]
        token = (await client.post("/v1/auth/token", json={"email": email, "password": once})).json()[
            "access_token"
        ]
        password = "a-long-enough-new-password"
        changed = await client.post(
            "/v1/auth/password",
            json={"current_password": once, "new_password": password},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert changed.status_code == 204, changed.text
    ctx, page = await login(browser, web, {"email": email, "password": password}, **PHONE)
    await page.goto("/app/referrals/new")
    now = datetime.now(LOCAL_TZ)
    before = await count_for(db, partner["id"])
    await page.locator("#f-youth-first_name").fill("Perpetua")
    await page.locator("#f-youth-date_of_birth").fill((date.today() - timedelta(days=14 * 365)).isoformat())
    await page.locator("#f-location-zip").fill("90011")
    await page.get_by_role("checkbox", name="legal").check()
    await page.locator("#f-consent-method").select_option("electronic")
    await page.locator("#f-consent-obtained_at").fill(local(now - timedelta(hours=2)))
    await page.locator("#f-consent-expires_at").fill(local(now + timedelta(days=300)))
    await page.get_by_role("button", name="Send referral").click()
    await page.wait_for_url("**/app/partner/referrals**")
    assert await count_for(db, partner["id"]) == before + 1
    rid = await db.fetchval(
        "SELECT id FROM referrals WHERE partner_id = $1 ORDER BY received_at DESC LIMIT 1", partner["id"]
    )
    # The audit log names the person, not only the partner.
    actors = await db.fetch("SELECT actor_id FROM audit_log WHERE target_id = $1", str(rid))
    user_id = await db.fetchval("SELECT id::text FROM staff WHERE lower(email) = $1", email)
    assert user_id in {a["actor_id"] for a in actors}
    await ctx.close()
