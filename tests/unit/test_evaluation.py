"""Evaluation export and report, pure: pseudonyms, de-identification, suppression everywhere, recidivism."""

from __future__ import annotations

import csv
import io
import random
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from services.intake.evaluation.report import (
    CohortRecord,
    build_report,
    csv_header,
    export_csv,
    export_rows,
    pseudonym,
)
from services.intake.evaluation.suppression import SUPPRESSED
from shared.casework import FOLLOWUPS, INTERVENTION_TYPES, MEASURES

NOW = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)


def cohort(n: int = 150, seed: int = 7) -> list[CohortRecord]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        received = NOW - timedelta(days=rnd.randint(30, 700))
        engaged = received + timedelta(days=rnd.choice([0.2, 1.5, 4, 9, 20])) if rnd.random() < 0.85 else None
        housing = rnd.random() < 0.5
        interventions = {"case_management": 3}
        if housing:
            interventions["housing_placement"] = 1
        if rnd.random() < 0.4:
            interventions["therapy"] = rnd.randint(1, 8)
        outcomes: dict[str, dict[str, str]] = {}
        if engaged is not None:
            outcomes["intake"] = {"housing_stability": rnd.choice(["stable", "unstable", "homeless"])}
            for p in ("m3", "m6", "m12"):
                risk = 0.12 if housing else 0.3
                outcomes[p] = {
                    "re_arrest": "yes" if rnd.random() < risk else "no",
                    "return_to_exploitation": rnd.choice(["no", "no", "no", "unknown"]),
                    "housing_stability": "stable" if housing or rnd.random() < 0.3 else "unstable",
                }
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
                outcomes=outcomes,
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
        assert row.age_band in {"10-13", "14-15", "16-17", "18-20", "21-24"}
        assert row.region in {"south_la", "san_fernando_valley", "out_of_area"}
        assert len(row.referral_month) == 7  # YYYY-MM, never a day
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


def test_report_never_publishes_a_small_count() -> None:
    report = msgspec.to_builtins(build_report(cohort(), NOW, ["synthetic"]))
    counts = [
        (p, v)
        for p, v in _walk(report)
        if any(k in p for k in ("cells", "_totals", ".total", ".n", ".events", ".referrals", ".followed_up"))
        and not p.endswith(("rows", "columns"))
    ]
    assert counts
    for path, value in counts:
        if isinstance(value, int) and not isinstance(value, bool):
            assert not 1 <= value <= 10, f"{path} = {value} should be suppressed"
    assert any(v == SUPPRESSED for _, v in counts), "this cohort has small cells"


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
    assert housing.received.versus_baseline == "lower"
    base = report.recidivism_baseline
    assert base.rate is not None and isinstance(base.n, int)
    assert housing.received.difference_pp == round((housing.received.rate - base.rate) * 100, 1)
    contact = {c.label: c for c in report.time_to_first_contact}
    assert contact["All regions"].median_days is not None
    assert report.period_start is not None and report.period_end is not None


def test_tiny_cohort_shows_no_statistics() -> None:
    report = build_report(cohort(6), NOW)
    assert report.referrals == SUPPRESSED
    assert all(c.median_days is None for c in report.time_to_first_contact)
    assert report.recidivism_baseline.rate is None
