"""One release (report JSON, HTML in both languages, CSV tables, row-level export) of a simulated pilot:
the linear-programming audit, no small count anywhere, every chart with its table, k-anonymity."""

from __future__ import annotations

import re
import secrets
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from refnet_dev.simulate import cohort_records, plan_pilot
from services.intake.evaluation.html import render_html
from services.intake.evaluation.kanon import K_ANONYMITY, QUASI_IDENTIFIERS
from services.intake.evaluation.report import Report, build_release, export_rows, tables_csv
from services.intake.evaluation.suppression import PROTECTION, Ledger
from tests.unit.test_evaluation import assert_no_small_count

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


@pytest.fixture(scope="module", params=[(2026, 100, 20), (7, 250, 50)], ids=["pilot-120", "300"])
def release(request: pytest.FixtureRequest) -> tuple[Report, Ledger, list[Any]]:
    seed, south, valley = request.param
    records = cohort_records(plan_pilot(seed, south, valley, NOW))
    report, ledger = build_release(records, NOW, ["Synthetic demo data"])
    return report, ledger, records


def test_linear_programming_audit_of_the_whole_release(release: tuple[Report, Ledger, list[Any]]) -> None:
    """Minimise and maximise every small count (published or derivable) with scipy's linprog subject to
    every published count, every sum the tables state, identical counts and nesting between tables:
    none can be narrowed below the protection interval 1-10."""
    _, ledger, _ = release
    audit = ledger.audit()
    unprotected = [c for c in audit.cells if not c.protected]
    assert not unprotected, unprotected[:5]
    assert audit.cells, "a pilot this size has small counts to protect"
    assert audit.narrowest is not None
    assert audit.narrowest.low <= PROTECTION[0] and audit.narrowest.high >= PROTECTION[1]
    print(
        f"\n{len(audit.cells)} small counts over {audit.unknowns} unknowns, {audit.equations} sums,"
        f" {audit.inequalities} nestings, {audit.published} published; narrowest: {audit.narrowest.key}"
        f" = {audit.narrowest.value} can be anything in [{audit.narrowest.low:g}, {audit.narrowest.high:g}]"
    )
    # The audit has teeth: hiding only the counts from 1 to 10 (no complements) leaves some exposed.
    primary = [k for k in ledger.hidden if 1 <= ledger.value(k) <= 10]
    assert any(not c.protected for c in ledger.audit(hidden_keys=primary).cells)


def test_no_small_count_anywhere_in_the_release(release: tuple[Report, Ledger, list[Any]]) -> None:
    report, _, _ = release
    assert_no_small_count(report)
    for row in tables_csv(report).splitlines()[1:]:
        _, _, column, value = row.rsplit(",", 3)
        if column in ("n", "events", "at_risk", "youth", "total", "count") and value.isdigit():
            assert not 1 <= int(value) <= 10, row


def test_survival_tables_publish_no_small_number_at_risk(release: tuple[Report, Ledger, list[Any]]) -> None:
    report, _, _ = release
    surv = report.survival
    curves = [surv.overall, *surv.by_prior_services.values(), *surv.by_intervention_family.values()]
    curves += list(surv.without_intervention_family.values())
    assert surv.overall.time_days[:2] == [0, 120]
    for c in curves:
        assert len(c.time_days) == len(c.survival) == len(c.ci_low) == len(c.ci_high) == len(c.at_risk)
        assert all(n > 10 for n in c.at_risk)
        assert all(e == 0 or e > 10 for e in c.events)
        assert all(lo <= s <= hi for s, lo, hi in zip(c.survival, c.ci_low, c.ci_high, strict=True))


@pytest.mark.parametrize("lang", ["en", "es"])
def test_html_in_both_languages_with_a_table_for_every_chart(
    release: tuple[Report, Ledger, list[Any]], lang: str
) -> None:
    report, _, _ = release
    page = render_html(report, lang)
    assert f'<html lang="{lang}">' in page
    assert ("Which intake characteristics" if lang == "en" else "Qué características") in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page, "works offline"
    # A table may sit in a scrolling wrapper (narrow screens).
    figures = re.findall(r'<figure>(.*?)</figure>\s*(?:<div class="table-wrap">)?(<\w+)', page, flags=re.S)
    assert len(figures) > 20
    for svg, after in figures:
        assert 'role="img"' in svg and "<title" in svg and "<desc" in svg
        assert after == "<table", "every chart is followed by the table of its numbers"
    # Counts shown on the page come from the report: no small count in any count cell.
    counts = re.findall(r'<td class="n[^"]*">\s*(?:<b>)?([^<]*?)(?:</b>)?\s*</td>', page)
    assert len(counts) > 100
    for cell in counts:
        assert cell in ("suppressed", "suprimido") or not 1 <= int(cell.replace(",", "")) <= 10, cell


def test_row_level_export_is_k_anonymous(release: tuple[Report, Ledger, list[Any]]) -> None:
    _, _, records = release
    rows = export_rows(records, secrets.token_bytes(32), NOW)
    combos: dict[tuple[Any, ...], set[str]] = defaultdict(set)
    for row in rows:
        combos[tuple(getattr(row, f) for f in QUASI_IDENTIFIERS)].add(row.pid)
    assert all(len(pids) >= K_ANONYMITY for pids in combos.values()), min(map(len, combos.values()))
    by_pid = {r.referral_id: r for r in records}
    del by_pid
    coarsened = [r for r in rows if r.generalised]
    assert coarsened, "a small pilot needs coarsening"
    for row in rows:
        if "referral_month" not in row.generalised:
            assert re.fullmatch(r"\d{4}-\d{2}", row.referral_month)
        assert set(row.generalised) <= set(QUASI_IDENTIFIERS)
    doc = msgspec.to_builtins(rows[0])
    assert "generalised" in doc
