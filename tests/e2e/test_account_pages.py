"""The account pages in a real browser (issue 14): an administrator creates an account and reads its
one-time password once, the person must choose their own at first sign-in, deactivation ends their open
session at once, a reset shows a new one-time password; partners are created (first key shown once) and
deactivated. English and Spanish, every page checked by axe-core."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from refnet_dev.embedded import EmbeddedPostgres, free_port
from tests.conftest import SEEDED_TEMPLATE, clone_database
from tests.e2e.browser import check_a11y, snap
from tests.support.platform import Platform, running_platform

pytestmark = pytest.mark.usefixtures("browser_present")


@pytest.fixture(scope="module")
def web(
    pg_server: EmbeddedPostgres, seeded_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    dsn = asyncio.run(clone_database(pg_server, "acw", SEEDED_TEMPLATE))
    extra = {
        "REFNET_ROUTING_METRICS_PORT": str(free_port()),
        "REFNET_NOTIFY_METRICS_PORT": str(free_port()),
    }
    with running_platform(dsn, tmp_path_factory.mktemp("acweb"), seeded_template, extra_env=extra) as plat:
        yield plat


@pytest.fixture
async def db(web: Platform) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(web.dsn)
    yield conn
    await conn.close()


async def login(browser: Any, web: Platform, email: str, password: str, lang: str = "en") -> tuple[Any, Any]:
    ctx = await browser.new_context(base_url=web.base_url, bypass_csp=True, locale=lang)
    await ctx.add_cookies([{"name": "refnet_lang", "value": lang, "url": web.base_url + "/app/"}])
    page = await ctx.new_page()
    await page.goto("/app/login")
    await page.locator("#email").fill(email)
    await page.locator("#password").fill(password)
    await page.locator("form[action='/app/login'] button[type=submit]").click()
    await page.wait_for_load_state()
    return ctx, page


async def test_admin_manages_accounts_and_the_person_chooses_a_password(
    web: Platform, browser: Any, db: asyncpg.Connection
) -> None:
    admin = web.creds["admins"][0]
    actx, apage = await login(browser, web, admin["email"], admin["password"])
    await apage.goto("/app/staff")
    await check_a11y(apage, "accounts page")
    who = f"page-{secrets.token_hex(4)}@staff.refnet.local"
    await apage.get_by_label("Name").fill("Paz Pagewright")
    await apage.get_by_label("Email").fill(who)
    await apage.get_by_label("Role").select_option("case_manager")
    # No region for a case manager: refused, with the reason on the page, and nothing made.
    await apage.get_by_role("button", name="Create account").click()
    await apage.wait_for_load_state()
    assert "regions" in await apage.locator("#staff-refused").inner_text()
    assert await db.fetchval("SELECT count(*) FROM staff WHERE email = $1", who) == 0
    await apage.get_by_label("Role").select_option("case_manager")
    await apage.get_by_role("checkbox", name="South Los Angeles").check()
    await apage.get_by_role("button", name="Create account").click()
    await apage.wait_for_load_state()
    once = await apage.locator("#one-time-password").inner_text()
    assert len(once) >= 12
    await snap(apage, "p14-01-account-created")
    await check_a11y(apage, "accounts page with a one-time password")
    # Shown once: a fresh view of the page does not have it.
    await apage.goto("/app/staff")
    assert once not in await apage.content()

    # First sign-in: straight to choosing a password; nothing else opens until then.
    pctx, ppage = await login(browser, web, who, once)
    assert "/app/password" in ppage.url
    await check_a11y(ppage, "password page (required)")
    await ppage.goto("/app/inbox")
    assert "/app/password" in ppage.url
    await ppage.get_by_label("Current password").fill(once)
    await ppage.get_by_label("New password").fill("short")
    await ppage.evaluate("document.querySelector('#new_password').removeAttribute('minlength')")
    await ppage.get_by_role("button", name="Save password").click()
    await ppage.wait_for_load_state()
    assert await ppage.locator("#password-refused").count() == 1
    await ppage.get_by_label("Current password").fill(once)
    await ppage.get_by_label("New password").fill("my-own-long-password")
    await ppage.get_by_role("button", name="Save password").click()
    await ppage.wait_for_load_state()
    assert ppage.url.split("?")[0].endswith("/app/inbox")

    # Deactivated by the admin: the person's open session ends at once.
    sid = str(await db.fetchval("SELECT id FROM staff WHERE email = $1", who))
    row = apage.locator(f'tr[data-account="{sid}"]')
    await apage.goto("/app/staff")
    await row.get_by_role("button", name="Deactivate").click()
    await apage.wait_for_load_state()
    assert await apage.locator(f'tr[data-account="{sid}"]').get_attribute("data-active") == "false"
    await ppage.goto("/app/inbox")
    assert "/app/login" in ppage.url
    await pctx.close()
    await apage.locator(f'tr[data-account="{sid}"]').get_by_role("button", name="Reactivate").click()
    await apage.wait_for_load_state()
    await apage.locator(f'tr[data-account="{sid}"]').get_by_role("button", name="Reset password").click()
    await apage.wait_for_load_state()
    again = await apage.locator("#one-time-password").inner_text()
    assert again != once
    actions = {r["action"] for r in await db.fetch("SELECT action FROM audit_log WHERE target_id = $1", sid)}
    assert {"staff.create", "staff.deactivate", "staff.reactivate", "staff.reset_password"} <= actions
    await actx.close()

    # In Spanish, the same pages are Spanish and axe-clean.
    sctx, spage = await login(browser, web, admin["email"], admin["password"], "es")
    await spage.goto("/app/staff")
    assert (
        await spage.get_by_role("heading", level=1).inner_text()
        == "Cuentas del personal y de organizaciones socias"
    )
    await check_a11y(spage, "accounts page (es)")
    await spage.goto("/app/password")
    await check_a11y(spage, "password page (es)")
    await sctx.close()


async def test_admin_creates_and_deactivates_a_partner(
    web: Platform, browser: Any, db: asyncpg.Connection
) -> None:
    admin = web.creds["admins"][0]
    ctx, page = await login(browser, web, admin["email"], admin["password"])
    await page.goto("/app/partners")
    name = f"Canyon Youth Shelter {secrets.token_hex(3)}"
    await page.get_by_label("Partner name").fill(name)
    await page.get_by_role("button", name="Create partner").click()
    await page.wait_for_load_state()
    key = await page.locator("#new-partner-key").inner_text()
    assert key.startswith("rnk_")
    await check_a11y(page, "partners page with a new key")
    pid = str(await db.fetchval("SELECT id FROM partners WHERE name = $1", name))
    async with httpx.AsyncClient(base_url=web.base_url) as client:
        headers = {"Authorization": f"Bearer {key}"}
        assert (await client.get("/v1/referrals", headers=headers)).status_code == 200
        await page.locator(f'tr[data-partner="{pid}"]').get_by_role("button", name="Deactivate").click()
        await page.wait_for_load_state()
        assert await page.locator(f'tr[data-partner="{pid}"]').get_attribute("data-active") == "false"
        assert (await client.get("/v1/referrals", headers=headers)).status_code == 401
        await page.locator(f'tr[data-partner="{pid}"]').get_by_role("button", name="Reactivate").click()
        await page.wait_for_load_state()
        assert (await client.get("/v1/referrals", headers=headers)).status_code == 200
    await ctx.close()
