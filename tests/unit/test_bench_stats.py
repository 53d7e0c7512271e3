"""bench._stats.top_statements: per-step statement times from two pg_stat_statements snapshots."""

from __future__ import annotations

from typing import Any

from bench._report import _statements_table
from bench._stats import StatementTimes, top_statements


def test_top_statements_are_the_steps_differences_per_referral_most_time_first() -> None:
    before: StatementTimes = {
        1: ("SELECT 1", 10, 10, 5.0, 0.0, 0),
        2: ("INSERT  INTO t\n VALUES ($1)", 100, 100, 40.0, 1.0, 200),
        3: ("SELECT idle", 7, 7, 1.0, 0.0, 0),
    }
    after: StatementTimes = {
        1: ("SELECT 1", 30, 30, 7.0, 0.0, 0),
        2: ("INSERT  INTO t\n VALUES ($1)", 300, 300, 80.0, 3.0, 600),
        3: ("SELECT idle", 7, 7, 1.0, 0.0, 0),  # not run during the step: left out
        4: ("DELETE FROM outbox", 50, 150, 10.0, 0.0, 300),  # new in the step
    }
    top = top_statements(before, after, referrals=100)
    assert [t["query"] for t in top] == ["INSERT INTO t VALUES ($1)", "DELETE FROM outbox", "SELECT 1"]
    insert = top[0]
    assert insert["calls_per_referral"] == 2.0
    assert insert["exec_us_per_referral"] == 400.0  # 40 ms over 100 referrals
    assert insert["plan_us_per_referral"] == 20.0
    assert insert["wal_records_per_referral"] == 4.0
    assert top[1]["rows_per_referral"] == 1.5
    assert len(top_statements(before, after, referrals=100, n=1)) == 1


def _step(rate: float, sustained: bool, query: str) -> dict[str, Any]:
    top = {
        "query": query,
        "calls_per_referral": 1.0,
        "rows_per_referral": 1.0,
        "exec_us_per_referral": 12.5,
        "plan_us_per_referral": 0.0,
        "wal_records_per_referral": 3.0,
    }
    return {"offered_rps": rate, "sustained": sustained, "top_statements": [top]}


def test_the_report_names_the_statements_of_the_highest_sustained_fixed_rate() -> None:
    steps = [
        _step(50, True, "SELECT a"),
        _step(400, True, "SELECT b | c"),
        _step(1000, False, "SELECT d"),
        {**_step(700, True, "SELECT e"), "search": True},
    ]
    text = "\n".join(_statements_table(steps))
    assert "at 400/s" in text or "at 400.0/s" in text
    assert "`SELECT b \\| c`" in text  # a pipe would end the Markdown cell
    assert "SELECT a" not in text and "SELECT d" not in text and "SELECT e" not in text
    # Nothing sustained: the highest rate run says where the time went.
    assert "SELECT d" in "\n".join(
        _statements_table([_step(50, False, "SELECT a"), _step(1000, False, "SELECT d")])
    )
    assert _statements_table([]) == []
