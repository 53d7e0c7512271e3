"""Evaluation export and report, pure: pseudonyms, de-identification, suppression everywhere, recidivism."""

from __future__ import annotations

import csv
import io
import random
import re
import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any

import msgspec
import pytest

from services.intake.evaluation.report import (
    VARIABLES,
    CohortRecord,
    build_report,
    csv_header,
    export_csv,
    export_rows,
    pseudonym,
    tables_csv,
)
from services.intake.evaluation.suppression import SUPPRESSED
from shared.casework import FOLLOWUPS, INTERVENTION_TYPES, MEASURES, local_date

NOW = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def cohort(n: int = 150, seed: int = 7) -> list[CohortRecord]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        received = NOW - timedelta(days=rnd.randint(30, 700))
        engaged = received + timedelta(days=rnd.choice([0.2, 1.5, 4, 9, 20])) if rnd.random() < 0.85 else None
        housing = rnd.random() < 0.5
        interventions = {"case_management": 3}
        first: dict[str, date] = {}
        if housing:
            interventions["housing_placement"] = 1
        if rnd.random() < 0.4:
            interventions["therapy"] = rnd.randint(1, 8)
        outcomes: dict[str, dict[str, str]] = {}
        dates: dict[str, dict[str, date]] = {}
        if engaged is not None:
            day = local_date(engaged)
            first = {t: day + timedelta(days=5) for t in interventions}
            outcomes["intake"] = {"housing_stability": rnd.choice(["stable", "unstable", "homeless"])}
            for p, months in (("m3", 3), ("m6", 6), ("m12", 12)):
                risk = 0.12 if housing else 0.3
                outcomes[p] = {
                    "re_arrest": "yes" if rnd.random() < risk else "no",
                    "return_to_exploitation": rnd.choice(["no", "no", "no", "unknown"]),
                    "housing_stability": "stable" if housing or rnd.random() < 0.3 else "unstable",
                }
                dates[p] = {m: day + timedelta(days=30 * months) for m in outcomes[p]}
        out.append(
            CohortRecord(
                referral_id=f"00000000-0000-0000-0000-{i:012d}",
                youth_key=f"youth-{i // 2 if i < 10 else i}",  # the first ten: five youth referred twice
                received_at=received,
                region=rnd.choice(["south_la"] * 5 + ["san_fernando_valley", None]),
                age_years=rnd.randint(12, 23),
                urgency="routine",
                needs=["housing", "mental_health"],
                status="engaged" if engaged else "accepted",
                intake={
                    "referral_setting": rnd.choice(["youth_shelter", "school", "street_outreach"]),
                    "prior_arrests": rnd.randint(0, 5),
                    "age_first_exploited": 14,
                },
                engaged_at=engaged,
                interventions=interventions,
                intervention_dates=first,
                outcomes=outcomes,
                outcome_dates=dates,
            )
        )
    return out


def test_pseudonyms_differ_per_export_and_link_within_one() -> None:
    records = cohort()
    first = export_rows(records, secrets.token_bytes(32), NOW)
    second = export_rows(records, secrets.token_bytes(32), NOW)
    assert len(first) == len(second) == len(records)
    assert not {r.pid for r in first} & {r.pid for r in second}, "no pseudonym repeats across exports"
    # Within one export, one youth keeps one pseudonym over their referrals (episodes 1 and 2).
    assert len({r.pid for r in first}) == len({r.youth_key for r in records})
    assert sorted(r.episode for r in first if r.episode > 1) == [2] * 5
    # Row order follows the pseudonym, so the position of a row does not link two exports either.
    assert [r.pid for r in first] == sorted(r.pid for r in first)
    assert pseudonym(b"k" * 32, "x") == pseudonym(b"k" * 32, "x") != pseudonym(b"j" * 32, "x")


def test_export_is_de_identified() -> None:
    records = cohort(20)
    rows = export_rows(records, secrets.token_bytes(32), NOW)
    ids = {r.referral_id for r in records} | {r.youth_key for r in records}
    text = msgspec.json.encode(rows).decode() + export_csv(rows)
    for secret in ids:
        assert secret not in text
    for row in rows:
        # Bands, wider bands after k-anonymous generalisation, or nothing at all.
        assert row.age_band in {"10-13", "14-15", "16-17", "18-20", "21-24", "10-15", "18-24", "*"}
        assert row.region in {"south_la", "san_fernando_valley", "out_of_area", "*"}
        assert re.fullmatch(r"\d{4}(-\d{2}|-Q[1-4]|-H[12])?|\*", row.referral_month), "never a day"
        assert set(row.interventions) == set(INTERVENTION_TYPES)
        assert set(row.outcomes) == set(FOLLOWUPS)
        assert row.prior_arrests_band in {"0", "1", "2-3", "4+"}
    fields = set(msgspec.structs.asdict(rows[0]))
    for forbidden in ("first_name", "date_of_birth", "zip", "phone", "notes", "referral_id", "received_at"):
        assert forbidden not in fields
    parsed = list(csv.reader(io.StringIO(export_csv(rows))))
    assert parsed[0] == csv_header()
    assert len(parsed) == len(rows) + 1
    assert all(len(line) == len(parsed[0]) for line in parsed)
    assert f"m12_{MEASURES[0]}" in parsed[0]


def _walk(node: Any, path: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in _walk(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [x for i, v in enumerate(node) for x in _walk(v, f"{path}[{i}]")]
    return [(path, node)]


# Integers in the report that are not counts of youth.
NOT_COUNTS = ("threshold", "combination_min_group", "protection_interval", "time_days", "landmark_days")


def assert_no_small_count(report: Any) -> int:
    """Every integer anywhere in the report that counts youth is 0 or above 10; returns how many."""
    seen = 0
    for path, value in _walk(msgspec.to_builtins(report)):
        if any(f".{name}" in path for name in NOT_COUNTS):
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            seen += 1
            assert not 1 <= value <= 10, f"{path} = {value} should be suppressed"
    return seen


def test_report_never_publishes_a_small_count() -> None:
    report = build_report(cohort(), NOW, ["synthetic"])
    assert assert_no_small_count(report) > 20
    tree = msgspec.to_builtins(report)
    assert any(v == SUPPRESSED for _, v in _walk(tree)), "this cohort has small cells"
    # The CSV tables carry the same numbers: no small count there either.
    for row in csv.DictReader(io.StringIO(tables_csv(report))):
        counted = row["column"] in ("n", "events", "at_risk", "youth", "count") or row["table"].startswith(
            ("referrals", "status", "close", "time_to_first_contact_histogram", "recidivism_by", "outcomes")
        )
        if counted and row["value"].isdigit():
            assert not 1 <= int(row["value"]) <= 10, row


def test_rates_only_with_both_parts_published() -> None:
    report = build_report(cohort(), NOW)
    rows = [report.recidivism_baseline, *report.recidivism_by_combination]
    for fam in report.recidivism_by_family:
        rows += [fam.received, fam.not_received]
    for series in report.outcomes_by_followup:
        rows += series.rows
    shown = 0
    for row in rows:
        if row.rate is None:
            continue
        shown += 1
        assert isinstance(row.n, int) and isinstance(row.events, int)
        assert row.rate == row.events / row.n
        assert row.ci_low is not None and row.ci_high is not None
        assert row.ci_low <= row.rate <= row.ci_high
        assert row.events > 10 or row.events == 0
        assert row.n - row.events > 10 or row.n == row.events
    assert shown >= 3


def test_recidivism_by_family_reflects_the_data() -> None:
    report = build_report(cohort(400, seed=3), NOW)
    housing = next(f for f in report.recidivism_by_family if f.family == "housing")
    assert housing.received.rate is not None and housing.not_received.rate is not None
    # Simulated risk 0.12 per follow-up with housing vs 0.30 without, over three follow-ups.
    assert housing.received.rate < housing.not_received.rate
    # A difference between the two groups, with its own interval, corrected for multiplicity.
    diff = housing.difference
    assert diff is not None and diff.reference == "not received" and diff.level == "received"
    assert diff.ci_high < 0 and diff.verdict == "lower" and diff.p_holm >= diff.p
    assert diff.difference == pytest.approx(housing.received.rate - housing.not_received.rate)
    contact = {c.label: c for c in report.time_to_first_contact}
    assert contact["All regions"].median_days is not None
    assert report.period_start is not None and report.period_end is not None


def test_by_variable_has_the_contract_shape() -> None:
    report = build_report(cohort(400, seed=3), NOW)
    doc = msgspec.to_builtins(report)
    assert list(doc["by_variable"]) == list(VARIABLES)
    assert set(doc["survival"]) >= {"overall", "by_intervention_family"}
    assert set(doc["adjusted"]) >= {"model", "terms"}
    for levels in doc["by_variable"].values():
        for row in levels:
            assert set(row) == {"level", "n", "events", "rate", "ci_low", "ci_high"}
            if SUPPRESSED in (row["n"], row["events"]):
                assert row["rate"] is None and row["ci_low"] is None and row["ci_high"] is None
            elif row["n"]:
                assert row["rate"] == row["events"] / row["n"]
                assert row["ci_low"] <= row["rate"] <= row["ci_high"]
    overall = doc["survival"]["overall"]
    assert set(overall) >= {"time_days", "survival", "ci_low", "ci_high", "at_risk"}
    assert overall["time_days"][0] == 0 and overall["survival"][0] == 1.0
    assert overall["survival"] == sorted(overall["survival"], reverse=True)
    for term in doc["adjusted"]["terms"]:
        assert set(term) == {"term", "ratio", "ci_low", "ci_high", "p"}


def test_an_empty_cohort_still_makes_a_report() -> None:
    report = build_report([], NOW)
    assert report.referrals == 0 and report.adjusted.youth == 0
    assert report.survival.overall.time_days == []
    assert all(t.ratio is None for t in report.adjusted.terms)


def test_tiny_cohort_shows_no_statistics() -> None:
    report = build_report(cohort(6), NOW)
    assert report.referrals == SUPPRESSED
    assert all(c.median_days is None for c in report.time_to_first_contact)
    assert report.recidivism_baseline.rate is None


def _with_protocol(records: list[CohortRecord], advocated: int, exams: list[str]) -> list[CohortRecord]:
    """The first ``advocated`` records got an advocate response (minutes = 30 + index), the next ones
    the exam outcomes given."""
    out = []
    for i, r in enumerate(records):
        extra: dict[str, Any] = {}
        if i < advocated:
            extra["advocate_minutes"] = 30.0 + i
        if i < len(exams):
            extra["exam_outcome"] = exams[i]
        out.append(msgspec.structs.replace(r, **extra))
    return out


def test_protocol_figures_report_advocate_time_and_exam_uptake() -> None:
    records = _with_protocol(cohort(), 41, ["accepted"] * 30 + ["declined"] * 12 + ["not_applicable"] * 12)
    report = build_report(records, NOW)
    assert report.protocol is not None
    advocate = report.protocol.advocate_response
    assert advocate.n == 41 and advocate.median_days == 50.0  # minutes: 30..70, median 50
    uptake = report.protocol.exam_uptake
    assert (uptake.n, uptake.events) == (54, 30)
    assert uptake.rate == pytest.approx(30 / 54)
    assert_no_small_count(report)


def test_protocol_figures_are_suppressed_like_everything_else() -> None:
    report = build_report(_with_protocol(cohort(), 4, ["accepted"] * 3 + ["declined"] * 20), NOW)
    assert report.protocol is not None
    assert report.protocol.advocate_response.n == SUPPRESSED
    assert report.protocol.advocate_response.median_days is None
    assert report.protocol.exam_uptake.events == SUPPRESSED and report.protocol.exam_uptake.rate is None
    assert_no_small_count(report)


def test_the_report_page_has_the_protocol_section_in_both_languages() -> None:
    from services.intake.evaluation import html

    report = build_report(_with_protocol(cohort(), 41, ["accepted"] * 30 + ["declined"] * 24), NOW)
    english = str(html.render_body(report, "en"))
    assert "Child-protection protocol (youth under 18)" in english and ">50.0<" in english
    spanish = str(html.render_body(report, "es"))
    assert "Protocolo de protección infantil" in spanish and "Child-protection" not in spanish
