"""The referral status machine: every legal and illegal transition, its mirror in SQL, FHIR mapping, codes."""

from __future__ import annotations

import itertools
import re
from datetime import date
from pathlib import Path
from typing import get_args

import pytest

from shared import casework, lifecycle
from shared.codes import NEED_CODES, REFERRAL_STATUSES

MIGRATION = Path(__file__).resolve().parents[2] / "shared" / "migrations" / "0005_lifecycle_evaluation.sql"
ACTORS: tuple[str, ...] = get_args(lifecycle.Actor)

# The machine written out by hand, so a change to the table is a visible change to this test too.
LEGAL: dict[tuple[str, str], set[str]] = {
    ("received", "assigned"): {"system", "supervisor", "admin"},
    ("received", "unroutable"): {"system"},
    ("received", "withdrawn"): {"partner", "case_manager", "system"},
    ("assigned", "accepted"): {"case_manager"},
    ("assigned", "unroutable"): {"system"},
    ("assigned", "withdrawn"): {"partner", "case_manager", "system"},
    ("unroutable", "assigned"): {"system", "supervisor", "admin"},
    ("unroutable", "withdrawn"): {"partner", "case_manager", "system"},
    ("accepted", "engaged"): {"case_manager"},
    ("accepted", "closed"): {"case_manager"},
    ("accepted", "withdrawn"): {"partner", "case_manager", "system"},
    ("engaged", "closed"): {"case_manager"},
}
PAIRS = list(itertools.product(REFERRAL_STATUSES, REFERRAL_STATUSES))


def test_the_table_is_exactly_the_expected_machine() -> None:
    assert {(t.source, t.target): set(t.actors) for t in lifecycle.TRANSITIONS} == LEGAL
    assert len(lifecycle.TRANSITIONS) == len(LEGAL), "one row per transition"


@pytest.mark.parametrize(("source", "target"), [p for p in PAIRS if p in LEGAL], ids="{0[0]}->{0[1]}".format)
@pytest.mark.parametrize("actor", ACTORS)
def test_legal_transition(source: str, target: str, actor: str) -> None:
    if actor in LEGAL[(source, target)]:
        t = lifecycle.check(source, target, actor)
        assert (t.source, t.target) == (source, target)
        assert lifecycle.is_legal(source, target, actor)
    else:
        with pytest.raises(lifecycle.IllegalTransition) as err:
            lifecycle.check(source, target, actor)
        assert err.value.allowed == lifecycle.allowed_targets(source, actor)
        assert target not in err.value.allowed
    assert lifecycle.is_legal(source, target)


@pytest.mark.parametrize(
    ("source", "target"), [p for p in PAIRS if p not in LEGAL], ids="{0[0]}->{0[1]}".format
)
def test_illegal_transition(source: str, target: str) -> None:
    assert not lifecycle.is_legal(source, target)
    for actor in ACTORS:
        with pytest.raises(lifecycle.IllegalTransition) as err:
            lifecycle.check(source, target, actor)
        # The 409 lists what this actor may do from here instead.
        assert err.value.source == source
        assert err.value.target == target
        assert err.value.allowed == tuple(
            t for (s, t), actors in LEGAL.items() if s == source and actor in actors
        )


def test_terminal_and_self_transitions() -> None:
    assert frozenset({"closed", "withdrawn"}) == lifecycle.TERMINAL
    for status in REFERRAL_STATUSES:
        assert not lifecycle.is_legal(status, status), "a status never 'changes' to itself"
    assert lifecycle.allowed_targets("closed") == ()
    assert lifecycle.allowed_targets("accepted", "case_manager") == ("engaged", "closed", "withdrawn")
    assert lifecycle.allowed_targets("assigned", "case_manager") == ("accepted", "withdrawn")


def test_every_status_is_reachable_from_received() -> None:
    seen, todo = {"received"}, ["received"]
    while todo:
        for nxt in lifecycle.allowed_targets(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    assert seen == set(REFERRAL_STATUSES)


def test_migration_enforces_the_same_table() -> None:
    """The database's trigger checks referral_status_transitions: it must hold exactly these pairs."""
    sql = MIGRATION.read_text()
    block = sql.split("INSERT INTO referral_status_transitions", 1)[1].split(";", 1)[0]
    pairs = set(re.findall(r"\('(\w+)', '(\w+)'\)", block))
    assert pairs == set(LEGAL)


def test_migration_code_lists_match_python() -> None:
    sql = MIGRATION.read_text()

    def check_list(column: str) -> set[str]:
        m = re.search(column + r"\s+text[^(]*CHECK \(\w+ IN\s*\(([^)]*)\)", sql, re.S)
        assert m, column
        return set(re.findall(r"'(\w+)'", m.group(1)))

    assert check_list("close_reason") == set(lifecycle.CLOSE_REASONS)
    assert check_list("type") == set(casework.INTERVENTION_TYPES)
    assert check_list("point") == set(casework.FOLLOWUPS)
    assert check_list("measure") == set(casework.MEASURES)
    assert check_list("source") == set(casework.OUTCOME_SOURCES)
    for measure, values in casework.MEASURE_VALUES.items():
        m = re.search(rf"WHEN '{measure}' THEN value IN \(([^)]*)\)", sql)
        assert m, measure
        assert set(re.findall(r"'(\w+)'", m.group(1))) == set(values)


def test_fhir_mapping() -> None:
    fhir = {"requested", "accepted", "rejected", "in-progress", "on-hold", "completed", "cancelled"}
    assert set(lifecycle.STATUS_FHIR) == set(REFERRAL_STATUSES)
    assert set(lifecycle.STATUS_FHIR.values()) <= fhir
    assert set(lifecycle.ASSIGNMENT_FHIR.values()) <= fhir
    assert lifecycle.fhir_task_status("engaged") == "in-progress"
    assert lifecycle.fhir_task_status("closed") == "completed"
    assert lifecycle.fhir_task_status("withdrawn") == "cancelled"
    assert lifecycle.fhir_task_status("unroutable") == "on-hold"
    assert lifecycle.ASSIGNMENT_FHIR["declined"] == "rejected"


def test_close_reasons_and_categories() -> None:
    # The list itself is checked against the database (test_migration_code_lists_match_python).
    assert set(lifecycle.CLOSE_CATEGORY) == set(lifecycle.CLOSE_REASONS)
    assert "other" in lifecycle.CLOSE_REASONS


def test_intervention_types_cover_needs_and_families_are_disjoint() -> None:
    # Every need code is an intervention type, first and in order, and the specific services follow.
    assert casework.INTERVENTION_TYPES[: len(NEED_CODES)] == NEED_CODES
    assert len(set(casework.INTERVENTION_TYPES)) == len(casework.INTERVENTION_TYPES) > len(NEED_CODES)
    members = [t for types in casework.FAMILIES.values() for t in types]
    assert len(members) == len(set(members)), "an intervention type belongs to one family at most"
    assert set(members) <= set(casework.INTERVENTION_TYPES)


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (date(2026, 1, 31), 1, date(2026, 2, 28)),
        (date(2028, 1, 31), 1, date(2028, 2, 29)),
        (date(2026, 11, 30), 3, date(2027, 2, 28)),
        (date(2026, 5, 15), 24, date(2028, 5, 15)),
        (date(2026, 12, 1), 12, date(2027, 12, 1)),
    ],
)
def test_add_months(day: date, months: int, expected: date) -> None:
    assert casework.add_months(day, months) == expected


def test_followup_schedule() -> None:
    assert casework.followup_schedule(date(2026, 3, 10)) == [
        ("intake", date(2026, 3, 10)),
        ("m3", date(2026, 6, 10)),
        ("m6", date(2026, 9, 10)),
        ("m12", date(2027, 3, 10)),
        ("m24", date(2028, 3, 10)),
    ]


def test_favourable() -> None:
    assert casework.favourable("re_arrest", "no") is True
    assert casework.favourable("re_arrest", "yes") is False
    assert casework.favourable("housing_stability", "unknown") is None
    assert casework.favourable("in_school_or_work", "both") is True
    assert casework.favourable("safety", "at_risk") is False
