"""The child-protection protocol file and its pure decisions (due times, status, completion checks)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from services.intake.app import create_app
from services.intake.protocol.clock import completion_errors, new_steps, started_by, status_of
from services.intake.protocol.definition import ProtocolError, load_protocol, parse_protocol
from services.intake.protocol.service import active_protocol, use_protocol
from shared.config import load_settings

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SHIPPED_CODES = [
    "hotline_report",
    "written_report",
    "advocate_response",
    "medical_exam_offered",
    "mdt_meeting",
]


def test_shipped_protocol_gives_a_15_year_old_the_five_csec_steps_with_their_clocks() -> None:
    doc = load_protocol()
    protocol = doc.for_age(15)
    assert protocol is not None
    steps = {s.code: s for s in new_steps(protocol.steps, T0)}
    assert list(steps) == SHIPPED_CODES
    assert steps["written_report"].due_at == T0 + timedelta(hours=36)
    assert steps["advocate_response"].due_at == T0 + timedelta(minutes=90)
    assert steps["medical_exam_offered"].due_at == T0 + timedelta(hours=72)
    assert steps["hotline_report"].reference_required
    assert steps["medical_exam_offered"].outcomes == ("accepted", "declined", "not_applicable")
    assert steps["mdt_meeting"].due_at is None


@pytest.mark.parametrize("age", [17, 0])
def test_every_minor_age_gets_the_csec_protocol(age: int) -> None:
    assert load_protocol().for_age(age) is not None


@pytest.mark.parametrize("age", [18, 20, 24, None])
def test_youth_of_18_to_24_or_of_unknown_age_get_no_csec_steps(age: int | None) -> None:
    assert load_protocol().for_age(age) is None


def test_status_open_overdue_done_and_done_late() -> None:
    due = T0 + timedelta(minutes=90)
    assert status_of(due, None, T0) == "open"
    assert status_of(due, None, due) == "overdue"
    assert status_of(due, due - timedelta(seconds=1), due + timedelta(hours=1)) == "done"
    assert status_of(due, due + timedelta(seconds=1), due + timedelta(hours=1)) == "done_late"
    assert status_of(None, None, T0 + timedelta(days=400)) == "open"
    assert status_of(None, T0, T0) == "done"


def test_a_clock_from_another_step_starts_when_that_step_is_completed() -> None:
    doc = parse_protocol(
        b"""
version = "t1"
[[protocols]]
name = "p"
min_age = 0
max_age = 17
[[protocols.steps]]
code = "first"
roles = ["case_manager"]
[[protocols.steps]]
code = "second"
roles = ["supervisor"]
clock_from = "first"
clock_minutes = 60
"""
    )
    protocol = doc.for_age(12)
    assert protocol is not None
    steps = {s.code: s for s in new_steps(protocol.steps, T0)}
    assert steps["second"].due_at is None
    done = T0 + timedelta(hours=5)
    clocks = {s.code: (s.clock_from, s.clock_minutes) for s in steps.values()}
    assert started_by("first", done, clocks) == {"second": done + timedelta(hours=1)}
    assert started_by("second", done, clocks) == {}


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b'version = "x"\n[[protocols]]\nname = "p"\nmin_age = 5\nmax_age = 2\n', "min_age"),
        (
            b'version = "x"\n[[protocols]]\nname = "p"\nmin_age = 0\nmax_age = 2\n'
            b'[[protocols.steps]]\ncode = "a"\nroles = ["case_manager"]\nclock_from = "nope"\nclock_minutes = 5\n',
            "nope",
        ),
        (
            b'version = "x"\n[[protocols]]\nname = "p"\nmin_age = 0\nmax_age = 2\n'
            b'[[protocols.steps]]\ncode = "a"\nroles = ["janitor"]\n',
            "roles",
        ),
        (b'version = "x"\nextra = 1\n', "extra"),
        (b"not toml [", "protocol file"),
    ],
)
def test_an_invalid_protocol_file_is_refused_saying_why(body: bytes, needle: str) -> None:
    with pytest.raises(ProtocolError, match=needle):
        parse_protocol(body, "test.toml")


def test_completion_errors_list_every_offending_field() -> None:
    errors = completion_errors(
        reference_required=True,
        outcomes=("accepted", "declined"),
        received_at=T0,
        now=T0 + timedelta(hours=1),
        completed_at=T0 + timedelta(days=1),
        reference="  ",
        outcome="maybe",
    )
    assert [f for f, _ in errors] == ["completed_at", "reference", "outcome"]
    assert (
        completion_errors(
            reference_required=True,
            outcomes=(),
            received_at=T0,
            now=T0 + timedelta(hours=1),
            completed_at=T0 + timedelta(minutes=30),
            reference="LA-123",
            outcome=None,
        )
        == []
    )
    before = completion_errors(
        reference_required=False,
        outcomes=(),
        received_at=T0,
        now=T0,
        completed_at=T0 - timedelta(minutes=1),
        reference=None,
        outcome="accepted",
    )
    assert [f for f, _ in before] == ["completed_at", "outcome"]


def test_an_administrator_replaces_the_protocol_file(tmp_path: Path) -> None:
    custom = tmp_path / "county-2027.toml"
    custom.write_text(
        'version = "county-2027.1"\n'
        '[[protocols]]\nname = "young_adult"\nmin_age = 18\nmax_age = 24\n'
        '[[protocols.steps]]\ncode = "safety_plan"\nroles = ["case_manager"]\nclock_minutes = 1440\n'
    )
    try:
        doc = use_protocol(str(custom))
        assert active_protocol() is doc and doc.version == "county-2027.1"
        adult = doc.for_age(20)
        assert adult is not None and [s.code for s in adult.steps] == ["safety_plan"]
        assert doc.for_age(15) is None
    finally:
        use_protocol("")
    assert active_protocol().version == load_protocol().version


def test_intake_refuses_to_start_on_an_invalid_protocol_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('version = "x"\n[[protocols]]\nname = "p"\nmin_age = 9\nmax_age = 3\n')
    settings = load_settings(
        {},
        secret_key="k" * 40,
        pii_master_key="MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        protocol_file=str(bad),
    )
    with pytest.raises(ProtocolError, match="min_age"):
        create_app(settings)
    missing = msgspec.structs.replace(settings, protocol_file=str(tmp_path / "nope.toml"))
    with pytest.raises(ProtocolError, match="cannot read"):
        create_app(missing)
    use_protocol("")


def test_refnet_protocol_check_validates_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from refnet.cli import main

    assert main(["protocol", "check"]) == 0
    shipped = json.loads(capsys.readouterr().out)
    assert shipped["version"] == load_protocol().version
    assert [s["code"] for s in shipped["protocols"][0]["steps"]] == SHIPPED_CODES
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'version = "x"\n[[protocols]]\nname = "p"\nmin_age = 0\nmax_age = 17\n'
        '[[protocols.steps]]\ncode = "a"\nroles = ["case_manager"]\nclock_from = "b"\nclock_minutes = 5\n'
    )
    assert main(["protocol", "check", str(bad)]) == 1
    assert "clock_from 'b'" in capsys.readouterr().err
