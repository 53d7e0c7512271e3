"""The evaluation as the web page and the downloads show it, pure: the report's contract shape on a
simulated pilot, every word of the page in Spanish, and a page body the web app's CSP can show."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from refnet_dev.simulate import cohort_records, in_evaluation, plan_pilot
from services.intake.evaluation import findings, html, texts
from services.intake.evaluation.report import Report, build_report
from tests.support.evaluation_contract import contract_problems

NOW = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
EVALUATION = Path(__file__).resolve().parents[2] / "services" / "intake" / "evaluation"


@pytest.fixture(scope="module")
def pilot() -> Report:
    """The pilot's own size (100 South LA, 20 San Fernando Valley), as the evaluation would see it."""
    plans = [p for p in plan_pilot(2026, 100, 20, NOW) if in_evaluation(p)]
    return build_report(cohort_records(plans), NOW)


@pytest.fixture(scope="module")
def large() -> Report:
    return build_report(cohort_records(plan_pilot(11, 800, 200, NOW)), NOW)


def test_the_report_has_the_contract_shape(pilot: Report, large: Report) -> None:
    for report in (pilot, large):
        assert contract_problems(msgspec.json.decode(msgspec.json.encode(report))) == []


def test_the_contract_check_finds_what_is_wrong(large: Report) -> None:
    """The checker itself fails on what the contract forbids (a check that cannot fail proves nothing)."""
    doc: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(large))
    row = next(r for r in doc["by_variable"]["region"] if isinstance(r["n"], int) and r["n"] > 10)
    row["events"] = 7
    del doc["by_variable"]["partner"]
    doc["survival"]["overall"]["at_risk"][0] = 3
    doc["adjusted"]["terms"][0]["hazard_ratio"] = 1.0
    problems = contract_problems(doc)
    assert any("partner" in p or "nine variables" in p for p in problems)
    doc["by_variable"]["partner"] = []
    problems = contract_problems(doc)
    assert any("count 7 is published" in p for p in problems)
    assert any("at_risk[0]" in p for p in problems)
    assert any("adjusted.terms[0]" in p for p in problems)


def test_only_consenting_youth_are_planned_into_the_evaluation() -> None:
    plans = plan_pilot(2026, 100, 20, NOW)
    declined = [p for p in plans if "evaluation" not in p.scope]
    private = [p for p in plans if "share_status_with_referrer" not in p.scope]
    assert all("case_management" in p.scope for p in plans)
    # Some youth say no (the demo shows what it changes), most say yes (the demo stays meaningful).
    assert 0 < len(declined) < 20 and 0 < len(private) < 30
    assert not any(in_evaluation(p) for p in declined)
    assert not any(in_evaluation(p) for p in plans if p.withdraw_at)
    # The scopes come from a stream of their own: the same seed plans the same pilot otherwise.
    again = plan_pilot(2026, 100, 20, NOW)
    assert [(p.received, p.intake, p.scope) for p in again] == [
        (p.received, p.intake, p.scope) for p in plans
    ]


def _codes(template: str, pattern: str) -> set[str]:
    return set(re.findall(pattern, (EVALUATION / template).read_text()))


def test_every_sentence_key_is_in_both_languages() -> None:
    used = _codes("report_body.html", r'\bT\("([a-z0-9_ ]+)"') | _codes(
        "report_page.html", r'\bT\("([a-z0-9_ ]+)"'
    )
    assert "answers" in used
    for lang in texts.LANGUAGES:
        missing = sorted(k for k in used if k not in texts._TEXT[lang])
        assert missing == [], (lang, missing)
    assert set(texts._TEXT["en"]) == set(texts._TEXT["es"])


@pytest.fixture
def labelled(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every code the page asks a label for, with the language asked."""
    seen: list[tuple[str, str]] = []
    original = texts.label

    def spy(code: str, lang: str = "en") -> str:
        seen.append((code, lang))
        return original(code, lang)

    monkeypatch.setattr(html, "label", spy)
    monkeypatch.setattr(findings, "label", spy)
    return seen


def test_every_label_on_the_page_is_spanish(large: Report, labelled: list[tuple[str, str]]) -> None:
    """Nothing on the Spanish page falls back to English: every code it labels has a Spanish label,
    except data (partner organisations' names) and numbers (bands, days)."""
    html.render_body(large, "es")
    partners = {row.level for row in large.by_variable["partner"]}
    codes = {code for code, lang in labelled if lang == "es"}
    assert {"housing", "south_la", "m12", "prior_services"} <= codes
    parts = {part for code in codes for part in code.split(" + ")}
    missing = sorted(
        c
        for c in parts
        if c not in texts._LABELS["es"] and c not in partners and not re.fullmatch(r"[0-9+\- ]+", c)
    )
    assert missing == []


def test_the_page_body_fits_the_web_apps_csp(large: Report) -> None:
    for lang in texts.LANGUAGES:
        body = str(html.render_body(large, lang))
        # No <style>, no style attributes, no script, no page around it: the web app's CSP allows none.
        assert "<style" not in body and " style=" not in body and "<script" not in body
        assert "<html" not in body and "<h1" not in body
        # Every chart is followed by its table (an SVG never stands alone).
        assert body.count("<svg") <= body.count("<table")
        ids = re.findall(r'\bid="([^"]+)"', body)
        assert len(ids) == len(set(ids)), "ids are unique on the page"
    page = html.render_html(large, "es")
    assert page.startswith("<!doctype html>") and '<html lang="es">' in page and "@media print" in page


def test_the_pilot_page_answers_the_three_questions(pilot: Report) -> None:
    body = str(html.render_body(pilot, "en"))
    for question in (
        "Which intake characteristics go with more recidivism?",
        "Which kinds of help go with less recidivism, after adjustment?",
        "How sure can we be at this size?",
    ):
        assert question in body
    found = findings.findings(pilot, "en")
    # Plain sentences with intervals, and a statement of what this size cannot tell.
    assert found.baseline and "95% CI" in found.baseline[0]
    assert any("cannot tell" in s or "Too few" in s or "80% of the time" in s for s in found.certainty)
