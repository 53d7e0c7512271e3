"""Every page of the web app, for every role, in English and Spanish, on an empty database, a fresh demo
and after a simulated pilot: each answers 200 (no 5xx anywhere, no error page) and shows no untranslated
message key, no raw code and, in Spanish, no English left from the catalogue. The pages are listed once,
per role, in tests/e2e/pages.py."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import httpx
import pytest

from refnet_dev.embedded import EmbeddedPostgres
from refnet_dev.simulate import simulate
from services.intake.web import i18n
from shared.casework import LOCAL_TZ
from shared.credentials import hash_password
from tests.conftest import SEEDED_TEMPLATE, TEMPLATE, clone_database
from tests.e2e.browser import check_a11y, snap
from tests.e2e.pages import NOT_PAGES, PAGES
from tests.support.platform import Platform, referral_body, running_platform, wait_for

pytestmark = pytest.mark.usefixtures("browser_present")

STATES = ("empty", "demo", "simulated")
ROLES = ("anonymous", "case_manager", "supervisor", "admin", "evaluator")
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass
class World:
    state: str
    plat: Platform
    people: dict[str, dict[str, Any]]
    ids: dict[str, str] = field(default_factory=dict)


# ---- the three states -------------------------------------------------------------------------------


async def _empty_people(dsn: str) -> dict[str, dict[str, Any]]:
    """One account per role in a database with nothing else: no partners, no referrals."""
    people: dict[str, dict[str, Any]] = {}
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.role', 'system', true)")
            for role, region in (
                ("admin", None),
                ("supervisor", "south_la"),
                ("evaluator", None),
                ("case_manager", "south_la"),
            ):
                sid, password = uuid.uuid4(), f"pw-{uuid.uuid4()}"
                email = f"first.{role}@agency.example"
                await conn.execute(
                    "INSERT INTO staff (id, email, display_name, role, region, password_hash)"
                    " VALUES ($1, $2, $3, $4, $5, $6)",
                    sid,
                    email,
                    f"First {role.replace('_', ' ').title()}",
                    role,
                    region,
                    hash_password(password),
                )
                if role == "case_manager":
                    await conn.execute(
                        "INSERT INTO case_managers (staff_id, regions, needs, languages, capacity)"
                        " VALUES ($1, '{south_la}', '{housing}', '{en}', 5)",
                        sid,
                    )
                people[role] = {"id": str(sid), "email": email, "password": password}
    finally:
        await conn.close()
    return people


def _demo_people(
    creds: dict[str, Any], case_manager: dict[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    return {
        "admin": creds["admins"][0],
        "supervisor": next(s for s in creds["supervisors"] if s["region"] == "south_la"),
        "evaluator": creds["evaluators"][0],
        "case_manager": case_manager or next(c for c in creds["case_managers"] if "south_la" in c["regions"]),
    }


async def _post(plat: Platform, creds: dict[str, Any], **overrides: Any) -> str:
    async with httpx.AsyncClient(base_url=plat.base_url, timeout=15) as client:
        r = await client.post(
            "/v1/referrals",
            json=referral_body(**overrides),
            headers={"Authorization": f"Bearer {creds['partners'][0]['api_key']}"},
        )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _simulated(plat: Platform, dsn: str, creds: dict[str, Any]) -> dict[str, Any]:
    """A small simulated pilot, plus two referrals waiting in the queue: one nobody in South LA can
    take (Korean), one out of area. Returns the case manager with the most cases, open and closed."""
    await simulate(plat.base_url, creds, dsn, south=24, valley=6, seed=15, log=lambda _: None)
    korean = await _post(plat, creds, location={"zip": "90011"}, language="ko")
    far = await _post(plat, creds, location={"zip": "10001"})
    conn = await asyncpg.connect(dsn)
    try:

        async def queued() -> bool:
            n = await conn.fetchval(
                "SELECT count(*) FROM referrals WHERE id = any($1::uuid[]) AND status = 'unroutable'",
                [korean, far],
            )
            return bool(n == 2)

        await wait_for(queued, timeout=30)
        best = await conn.fetchval(
            "SELECT a.case_manager_id FROM assignments a JOIN referrals r ON r.id = a.referral_id"
            " JOIN case_managers c ON c.staff_id = a.case_manager_id"
            " WHERE a.state = 'accepted' AND 'south_la' = ANY (c.regions)"
            " GROUP BY 1 ORDER BY count(*) FILTER (WHERE r.status = 'closed') > 0 DESC,"
            " count(*) FILTER (WHERE r.status IN ('accepted', 'engaged')) > 0 DESC, count(*) DESC LIMIT 1"
        )
    finally:
        await conn.close()
    return next(c for c in creds["case_managers"] if c["id"] == str(best))


async def _placeholders(dsn: str, people: dict[str, dict[str, Any]]) -> dict[str, str]:
    """The ids the pages' paths need, as far as this state has them."""
    cm = people["case_manager"]["id"]
    queries = {
        "case_id": (
            "SELECT r.id FROM referrals r JOIN assignments a ON a.referral_id = r.id"
            " WHERE a.case_manager_id = $1 AND a.state = 'accepted' AND r.status IN ('engaged', 'accepted')"
            " ORDER BY r.status = 'engaged' DESC LIMIT 1",
            cm,
        ),
        "closed_case_id": (
            "SELECT r.id FROM referrals r JOIN assignments a ON a.referral_id = r.id"
            " WHERE a.case_manager_id = $1 AND a.state = 'accepted' AND r.status = 'closed' LIMIT 1",
            cm,
        ),
        "queue_id": ("SELECT id FROM referrals WHERE status = 'unroutable' AND region = 'south_la' LIMIT 1",),
        "out_of_area_id": (
            "SELECT id FROM referrals WHERE status = 'unroutable' AND region IS NULL LIMIT 1",
        ),
        "case_manager_id": (
            "SELECT staff_id FROM case_managers WHERE 'south_la' = ANY (regions) ORDER BY staff_id LIMIT 1",
        ),
        "partner_id": ("SELECT id FROM partners ORDER BY name LIMIT 1",),
    }
    out: dict[str, str] = {}
    conn = await asyncpg.connect(dsn)
    try:
        for name, (sql, *args) in queries.items():
            value = await conn.fetchval(sql, *args)
            if value is not None:
                out[name] = str(value)
    finally:
        await conn.close()
    return out


@pytest.fixture(scope="module", params=STATES)
def world(
    request: pytest.FixtureRequest,
    pg_server: EmbeddedPostgres,
    seeded_template: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[World]:
    state: str = request.param
    if state == "empty":
        dsn = asyncio.run(clone_database(pg_server, "pe", TEMPLATE))
        people = asyncio.run(_empty_people(dsn))
        creds: dict[str, Any] = {"partners": []}
    else:
        dsn = asyncio.run(clone_database(pg_server, "pd", SEEDED_TEMPLATE))
        creds = seeded_template
        people = _demo_people(creds)
    with running_platform(dsn, tmp_path_factory.mktemp(f"pages-{state}"), creds) as plat:
        if state == "simulated":
            people = _demo_people(creds, asyncio.run(_simulated(plat, dsn, creds)))
        ids = asyncio.run(_placeholders(dsn, people))
        if state == "simulated":
            wanted = {name for paths in PAGES.values() for p in paths for name in _PLACEHOLDER.findall(p)}
            assert wanted <= set(ids), f"the simulated pilot lacks {wanted - set(ids)}"
        yield World(state, plat, people, ids)


# ---- what a page must not show ------------------------------------------------------------------------

_NAMESPACES = {key.split(".")[0] for key in i18n.CATALOGUE["en"] if "." in key}
_KEY = re.compile(r"^([a-z_]+)\.([a-z_]+)$")
_CODE = re.compile(r"^[a-z]+(?:_[a-z0-9]+)+$")


def _english_only() -> set[str]:
    """Texts the English catalogue has and the Spanish one says differently (long enough to matter)."""
    en, es = i18n.CATALOGUE["en"], i18n.CATALOGUE["es"]
    texts = {v for k, v in en.items() if v != es.get(k) and "{" not in v and len(v) >= 5}
    codes_en, codes_es = i18n._CODES["en"], i18n._CODES["es"]
    for kind, table in codes_en.items():
        for code, label in table.items():
            spanish = i18n.code("es", kind, code)
            if label != spanish and len(label) >= 5:
                texts.add(label)
    del codes_es
    return texts


ENGLISH_ONLY = _english_only()
ERROR_TITLES = {i18n.t(lang, "error.title") for lang in i18n.LANGS}


def problems_in(text_nodes: list[str], lang: str) -> list[str]:
    """Untranslated message keys, raw codes and (Spanish) English left over, in a page's visible texts."""
    found: list[str] = []
    for node in text_nodes:
        for token in node.split():
            word = token.strip(".,;:()[]\"'·!?")
            if "@" in word or "/" in word or word.startswith("rnk_"):
                continue
            m = _KEY.match(word)
            if m and m.group(1) in _NAMESPACES:
                found.append(f"untranslated key {word!r}")
            elif _CODE.match(word):
                found.append(f"raw code {word!r}")
        if lang == "es" and node in ENGLISH_ONLY:
            found.append(f"English in Spanish: {node!r}")
    return found


def test_the_problem_finder_finds_problems() -> None:
    # The finder itself: keys, codes and English are caught; names, emails and numbers are not.
    assert problems_in(
        ["dash.window_is", "case_management", "Lucia Gómez", "ana.reyes@demo.refnet.local"], "en"
    ) == [
        "untranslated key 'dash.window_is'",
        "raw code 'case_management'",
    ]
    assert problems_in(["Referrals by region"], "es") == ["English in Spanish: 'Referrals by region'"]
    assert problems_in(["Derivaciones por región", "12", "p50"], "es") == []


def test_every_app_route_is_walked_or_excused() -> None:
    from services.intake.app import create_app
    from shared.config import load_settings

    key = base64.b64encode(os.urandom(32)).decode()
    with warnings.catch_warnings():
        # Litestar's own deprecation notices about the API's parameters are not what this test is about.
        warnings.simplefilter("ignore", DeprecationWarning)
        app = create_app(load_settings({}, secret_key="x" * 40, pii_master_key=key))
    routes = {
        re.sub(r"\{[^}]+\}", "{}", r.path)
        for r in app.routes
        if r.path.startswith("/app") and "GET" in getattr(r, "methods", ())
    }
    listed = {re.sub(r"\{[^}]+\}", "{}", p.split("?")[0]) for paths in PAGES.values() for p in paths}
    listed |= {"/app" if p == "/app/" else p for p in listed}
    missing = sorted(r for r in routes if r not in listed and r not in NOT_PAGES)
    assert not missing, f"pages missing from tests/e2e/pages.py: {missing}"


# ---- the walk -------------------------------------------------------------------------------------------

# Visible leaf texts in the page's language (the language switch names each language in itself).
_TEXTS = """() => Array.from(document.querySelectorAll('body *, svg text'))
  .filter(e => e.children.length === 0 && !['SCRIPT', 'STYLE'].includes(e.tagName))
  .filter(e => { const l = e.closest('[lang]'); return !l || l.lang === document.documentElement.lang; })
  .map(e => (e.textContent || '').trim()).filter(t => t.length > 0)"""


async def _expectations(page: Any, template: str, state: str) -> list[str]:
    """What particular pages must show (beyond answering cleanly), where the state has the data."""
    found: list[str] = []
    if template.startswith("/app/cases/") and not await page.locator("#youth-language").count():
        found.append("the case page does not show the youth's language")
    if template == "/app/cases/{closed_case_id}":
        today = datetime.now(LOCAL_TZ).date().isoformat()
        dates = re.findall(
            r"\d{4}-\d{2}-\d{2}", " ".join(await page.locator("#followups li").all_inner_texts())
        )
        if any(d > today for d in dates) or not await page.locator("#no-more-followups").count():
            found.append(f"a closed case lists future follow-ups: {dates}")
    if template == "/app/inbox" and state == "simulated":
        attention = [
            await row.get_attribute("data-attention")
            for row in await page.locator("#caseload tbody tr").all()
        ]
        rank = {"overdue": 0, "first_contact": 1, "followup": 2, "": 3}
        if attention != sorted(attention, key=lambda a: rank[a or ""]):
            found.append(f"open cases are not ordered by what needs attention: {attention}")
        if not await page.locator("#closed-cases tbody tr").count():
            found.append("no closed cases listed apart")
    return found


async def _sign_in(page: Any, person: dict[str, Any]) -> None:
    await page.goto("/app/login")
    await page.locator("#email").fill(person["email"])
    await page.locator("#password").fill(person["password"])
    await page.locator("form[action='/app/login'] button[type=submit]").click()
    await page.wait_for_load_state()
    assert "/app/login" not in page.url, f"could not sign in as {person['email']}"


async def _walk(browser: Any, world: World, role: str, lang: str) -> list[str]:
    # bypass_csp: only so axe-core can be injected as an inline script; the app's CSP forbids it.
    ctx = await browser.new_context(base_url=world.plat.base_url, bypass_csp=True)
    await ctx.add_cookies([{"name": "refnet_lang", "value": lang, "url": world.plat.base_url + "/app/"}])
    page = await ctx.new_page()
    server_errors: list[str] = []
    page.on(
        "response",
        lambda r: server_errors.append(f"{r.status} {r.url}") if r.status >= 500 else None,
    )
    found: list[str] = []
    try:
        if role != "anonymous":
            await _sign_in(page, world.people[role])
        for template in PAGES[role]:
            names = _PLACEHOLDER.findall(template)
            if any(n not in world.ids for n in names):
                continue  # this state has no such record yet (the simulated pilot has them all)
            path = _PLACEHOLDER.sub(lambda m: world.ids[m.group(1)], template)
            where = f"[{world.state} {role} {lang}] {path}"
            resp = await page.goto(path)
            status = resp.status if resp is not None else 0
            if status != 200:
                found.append(f"{where}: HTTP {status}")
                continue
            if template != "/app/" and not page.url.split("?")[0].endswith(path.split("?")[0]):
                found.append(f"{where}: ended on {page.url}")
            if (await page.title()).split(" · ")[0] in ERROR_TITLES:
                found.append(f"{where}: an error page")
            if role == "anonymous" and await page.locator("main .flash, main .error").count():
                # A first visit is a plain sign-in page (not "your session ended").
                found.append(f"{where}: a first visit shows a message")
            found.extend(f"{where}: {p}" for p in problems_in(await page.evaluate(_TEXTS), lang))
            found.extend(f"{where}: {p}" for p in await _expectations(page, template, world.state))
            fragment = template.split("?")[0].endswith(("/fragment", "/panels"))  # parts of a page
            if world.state == "simulated" and lang == "en" and not fragment:
                # Accessibility with real data in every table and chart (axe-core, serious or critical).
                try:
                    await check_a11y(page, where)
                except AssertionError as exc:
                    found.append(str(exc))
            if world.state == "simulated" and lang == "es":
                name = re.sub(r"[^a-z0-9_=]+", "-", template.lower()).strip("-")
                await snap(page, f"walk-{role}-{name}")
    finally:
        await ctx.close()
    return found + [f"[{world.state} {role} {lang}] server error: {e}" for e in server_errors]


@pytest.mark.parametrize("lang", i18n.LANGS)
@pytest.mark.parametrize("role", ROLES)
async def test_every_page_answers_for_every_role(world: World, browser: Any, role: str, lang: str) -> None:
    found = await _walk(browser, world, role, lang)
    assert not found, "\n".join(found)
