"""The evaluation after `refnet demo simulate` (a small pilot through the real API): the report's contract
fields over HTTP, and the evaluator's page /app/evaluation in a real browser in English and Spanish
(axe-core, no 5xx, no untranslated key), with its downloads, each audited."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from refnet_dev.embedded import EmbeddedPostgres
from refnet_dev.simulate import simulate
from services.intake.web.i18n import CATALOGUE
from tests.conftest import SEEDED_TEMPLATE, clone_database
from tests.e2e.browser import check_a11y, snap
from tests.support.evaluation_contract import contract_problems
from tests.support.platform import Platform, running_platform

needs_browser = pytest.mark.usefixtures("browser_present")
# The pilot's own size (the default of `refnet demo simulate`).
SOUTH, VALLEY = 100, 20
QUESTIONS = {
    "en": (
        "Which intake characteristics go with more recidivism?",
        "Which kinds of help go with less recidivism, after adjustment?",
        "How sure can we be at this size?",
    ),
    "es": (
        "¿Qué características de la admisión van con más reincidencia?",
        "¿Qué tipos de ayuda van con menos reincidencia, tras el ajuste?",
        "¿Qué certeza tenemos con este tamaño?",
    ),
}


@pytest.fixture(scope="module")
def pilot(
    pg_server: EmbeddedPostgres, seeded_template: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Platform]:
    dsn = asyncio.run(clone_database(pg_server, "w", SEEDED_TEMPLATE))
    with running_platform(dsn, tmp_path_factory.mktemp("evaluation"), seeded_template) as plat:
        summary = asyncio.run(
            simulate(
                plat.base_url, plat.creds, plat.dsn, south=SOUTH, valley=VALLEY, seed=16, log=lambda _: None
            )
        )
        assert summary.referrals == SOUTH + VALLEY
        yield plat


async def _token(client: httpx.AsyncClient, person: dict[str, Any]) -> str:
    r = await client.post("/v1/auth/token", json={"email": person["email"], "password": person["password"]})
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])


async def test_the_report_over_http_is_as_the_contract_writes_it(pilot: Platform) -> None:
    async with httpx.AsyncClient(base_url=pilot.base_url, timeout=60) as client:
        evaluator = await _token(client, pilot.creds["evaluators"][0])
        r = await client.get("/v1/evaluation/report", headers={"Authorization": f"Bearer {evaluator}"})
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        doc = r.json()
        assert contract_problems(doc) == []
        # A simulated pilot of this size publishes numbers, not only "suppressed".
        assert isinstance(doc["referrals"], int) and doc["referrals"] > 10
        assert any(isinstance(row["rate"], float) for rows in doc["by_variable"].values() for row in rows)
        assert doc["survival"]["overall"]["time_days"][:1] == [0]
        assert any(t["ratio"] is not None for t in doc["adjusted"]["terms"])
        # Youth who declined the evaluation or withdrew are not counted.
        db = await asyncpg.connect(pilot.dsn)
        try:
            consenting = await db.fetchval(
                "SELECT count(*) FROM consents WHERE 'evaluation' = ANY (scope) AND withdrawn_at IS NULL"
            )
            everyone = await db.fetchval("SELECT count(*) FROM referrals")
        finally:
            await db.close()
        assert doc["referrals"] == consenting < everyone
        admin = await _token(client, pilot.creds["admins"][0])
        assert (
            await client.get("/v1/evaluation/report", headers={"Authorization": f"Bearer {admin}"})
        ).status_code == 200
        supervisor = await _token(client, pilot.creds["supervisors"][0])
        r = await client.get("/v1/evaluation/report", headers={"Authorization": f"Bearer {supervisor}"})
        assert r.status_code == 403


async def _signed_in(browser: Any, pilot: Platform, person: dict[str, Any]) -> tuple[Any, Any, list[str]]:
    # bypass_csp: only so axe-core can be injected as an inline script; the app's CSP forbids it.
    ctx = await browser.new_context(base_url=pilot.base_url, bypass_csp=True, accept_downloads=True)
    page = await ctx.new_page()
    failures: list[str] = []
    page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    await page.goto("/app/login")
    await page.get_by_label("Email").fill(person["email"])
    await page.get_by_label("Password").fill(person["password"])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()
    return ctx, page, failures


async def _no_untranslated_key(page: Any) -> None:
    text = await page.locator("body").inner_text()
    keys = [k for k in CATALOGUE["en"] if "." in k and re.search(rf"(?<![\w.]){re.escape(k)}(?![\w.])", text)]
    assert keys == [], f"untranslated keys on the page: {keys}"


async def _every_chart_has_its_table(page: Any) -> None:
    charts = await page.locator(".report figure svg.chart").count()
    assert charts > 10
    # Each figure is followed by the table of its numbers before the next figure.
    orphans = await page.evaluate(
        """() => [...document.querySelectorAll('.report figure')].filter(f => {
            for (let n = f.nextElementSibling; n; n = n.nextElementSibling) {
                if (n.matches('figure')) return true;
                if (n.querySelector('table') || n.matches('table')) return false;
            }
            return true;
        }).length"""
    )
    assert orphans == 0


@needs_browser
async def test_the_evaluator_reads_the_answers_in_english_and_spanish(pilot: Platform, browser: Any) -> None:
    ctx, page, failures = await _signed_in(browser, pilot, pilot.creds["evaluators"][0])
    assert page.url.endswith("/app/evaluation"), "the evaluator's home is the evaluation"
    nav = page.get_by_role("navigation", name="Main")
    assert await nav.get_by_role("link", name="Evaluation").get_attribute("aria-current") == "page"
    for question in QUESTIONS["en"]:
        assert await page.get_by_role("heading", name=question).count() == 1
    # Plain sentences with intervals: the cohort's rate, then each question's answers (at the pilot's
    # size an effect may or may not clear its interval; the certainty answer always says what it can't).
    baseline = await page.locator("#answers + p").inner_text()
    assert re.search(r"\d+% were .*\(95% CI \d+% to \d+%\)", baseline), baseline
    certainty = await page.locator('section[aria-labelledby="q-certainty"] li').all_inner_texts()
    assert any("cannot tell" in s or "Too few" in s for s in certainty), certainty
    answers = await page.locator(".report .q li").all_inner_texts()
    for s in answers:
        if "times the hazard" in s:
            assert re.search(r"95% CI [\d.]+ to [\d.]+", s), s
    await _every_chart_has_its_table(page)
    await _no_untranslated_key(page)
    await snap(page, "30-evaluation")
    await check_a11y(page, "evaluation")

    await page.get_by_role("link", name="Español").click()
    await page.wait_for_load_state()
    assert await page.locator("html").get_attribute("lang") == "es"
    assert page.url.endswith("/app/evaluation")
    for question in QUESTIONS["es"]:
        assert await page.get_by_role("heading", name=question).count() == 1
    body = await page.locator("main").inner_text()
    for english in (*QUESTIONS["en"], "Downloads", "What the numbers say", "Referral setting", "Received"):
        assert english not in body, f"English on the Spanish page: {english!r}"
    assert "IC 95%" in body
    await _every_chart_has_its_table(page)
    await _no_untranslated_key(page)
    await snap(page, "31-evaluation-es")
    await check_a11y(page, "evaluation (es)")
    assert failures == []
    await ctx.close()


async def _download(page: Any, name: str) -> bytes:
    async with page.expect_download() as info:
        await page.get_by_role("link", name=name).click()
    download = await info.value
    return await asyncio.to_thread(Path(await download.path()).read_bytes)


@needs_browser
async def test_downloads_are_the_report_and_the_exports_each_audited(pilot: Platform, browser: Any) -> None:
    db = await asyncpg.connect(pilot.dsn)
    try:
        since = await db.fetchval("SELECT coalesce(max(id), 0) FROM audit_log")
        ctx, page, failures = await _signed_in(browser, pilot, pilot.creds["evaluators"][0])
        english = (await _download(page, "The report as one HTML file (English)")).decode()
        spanish = (await _download(page, "The report as one HTML file (Spanish)")).decode()
        assert english.startswith("<!doctype html>") and '<html lang="en">' in english and "<svg" in english
        assert '<html lang="es">' in spanish and "Lo que dicen las cifras" in spanish
        for report in (english, spanish):
            assert "http://" not in report.replace("http://www.w3.org", "") and "https://" not in report
            assert "Demo0" not in report and "Synthetic demo data" in report
        tables = list(
            csv.reader(io.StringIO((await _download(page, "Every table of the report (CSV)")).decode()))
        )
        assert tables[0] == ["table", "row", "column", "value"] and len(tables) > 100
        rows = list(
            csv.DictReader(
                io.StringIO(
                    (await _download(page, "De-identified export, one row per referral (CSV)")).decode()
                )
            )
        )
        doc = json.loads(await _download(page, "De-identified export, one row per referral (JSON)"))
        assert len(rows) == len(doc["rows"]) > 10 and doc["pseudonyms"] == "per-export"
        # The same cohort as the report's: only youth whose consent covers the evaluation.
        consenting = await db.fetchval(
            "SELECT count(*) FROM consents WHERE 'evaluation' = ANY (scope) AND withdrawn_at IS NULL"
        )
        assert len(rows) == consenting
        assert failures == []
        await ctx.close()
        audited = [
            (r["action"], r["actor_role"], json.loads(r["detail"]))
            for r in await db.fetch(
                "SELECT action, actor_role, detail::text AS detail FROM audit_log"
                " WHERE id > $1 AND action LIKE 'evaluation.%' ORDER BY id",
                since,
            )
        ]
        assert [(a, role, d.get("via"), d.get("format"), d.get("language")) for a, role, d in audited] == [
            ("evaluation.report", "evaluator", "web", None, None),  # the page itself, on sign-in
            ("evaluation.report", "evaluator", "web", "html", "en"),
            ("evaluation.report", "evaluator", "web", "html", "es"),
            ("evaluation.report", "evaluator", "web", "tables_csv", None),
            ("evaluation.export", "evaluator", "web", "csv", None),
            ("evaluation.export", "evaluator", "web", "json", None),
        ]
    finally:
        await db.close()


@needs_browser
async def test_who_may_open_the_evaluation_page(pilot: Platform, browser: Any) -> None:
    ctx, page, failures = await _signed_in(browser, pilot, pilot.creds["admins"][0])
    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Evaluation").click()
    await page.wait_for_load_state()
    assert page.url.endswith("/app/evaluation")
    assert await page.locator(".report figure svg.chart").count() > 10
    await ctx.close()
    supervisor = pilot.creds["supervisors"][0]
    ctx, page, failures = await _signed_in(browser, pilot, supervisor)
    response = await page.goto("/app/evaluation")
    assert response.status == 403
    assert (
        await page.get_by_role("navigation", name="Main").get_by_role("link", name="Evaluation").count() == 0
    )
    response = await page.goto("/app/evaluation/export.csv")
    assert response.status == 403
    assert failures == []
    await ctx.close()
