"""The dashboard benchmark's pure parts: statement names, plan summaries and the Markdown table."""

from __future__ import annotations

from typing import Any

from bench.dashboard import METRICS_LABELS, Case, _label, _nodes, _seq_scans, _table

PLAN: dict[str, Any] = {
    "Node Type": "Limit",
    "Actual Rows": 21,
    "Actual Loops": 1,
    "Plans": [
        {
            "Node Type": "Aggregate",
            "Strategy": "Hashed",
            "Actual Rows": 3,
            "Actual Loops": 1,
            "Plans": [
                {
                    "Node Type": "Seq Scan",
                    "Relation Name": "referrals",
                    "Actual Rows": 400,
                    "Rows Removed by Filter": 600,
                    "Actual Loops": 2,
                },
                {
                    "Node Type": "Index Scan",
                    "Scan Direction": "Backward",
                    "Index Name": "referrals_received",
                    "Relation Name": "referrals",
                    "Actual Rows": 1,
                    "Actual Loops": 5,
                },
            ],
        }
    ],
}


async def _noop(pool: Any) -> object:
    return None


def test_plan_nodes_name_strategy_direction_index_and_rows() -> None:
    assert _nodes(PLAN) == [
        "Limit (rows 21)",
        "  HashAggregate (rows 3)",
        "    Seq Scan on referrals (rows 800, loops 2)",
        "    Index Scan Backward using referrals_received on referrals (rows 5, loops 5)",
    ]
    assert _nodes(PLAN, analyzed=False)[2] == "    Seq Scan on referrals"


def test_seq_scans_count_every_row_read() -> None:
    assert _seq_scans(PLAN) == [{"table": "referrals", "rows_read": 2000}]


def test_statements_are_named_by_fragment_then_case_then_code() -> None:
    metrics = Case("GET /v1/admin/metrics", "admin", _noop, METRICS_LABELS)
    assert _label("SELECT 1 FROM outbox", metrics) == "outbox backlog (system)"
    assert _label("SELECT 1", Case("x", "y", _noop, label="queue.sql")) == "queue.sql"
    assert _label("-- comment\nSELECT  1\nFROM t", Case("x", "y", _noop)) == "SELECT 1 FROM t"


def test_table_has_a_column_per_size_and_a_row_per_statement() -> None:
    def result(referrals: int, cms: int, ms: float) -> dict[str, Any]:
        statement = {"name": "s", "p50_ms": ms, "p99_ms": ms * 2, "plan": {"seq_scans": []}}
        return {
            "referrals": referrals,
            "case_managers": cms,
            "tables": {
                "referrals": referrals,
                "assignments": 1,
                "last_30_days": 1,
                "queue": 0,
                "open_offers": 0,
            },
            "queries": [
                {
                    "endpoint": "GET /a",
                    "as": "admin",
                    "p50_ms": ms,
                    "p99_ms": ms,
                    "statements": [statement] * 2,
                },
                {
                    "endpoint": "GET /b",
                    "as": "partner",
                    "p50_ms": ms,
                    "p99_ms": ms,
                    "statements": [statement],
                },
            ],
        }

    doc = {
        "commit": "0123456789abcdef",
        "repeat": 3,
        "warmup": 1,
        "machine": {"cpus": 2},
        "postgres": "18",
        "plan_cache_mode": "auto",
        "skipped_migrations": [11],
        "results": [result(1000, 10, 1.0), result(1_000_000, 10_000, 2.5)],
    }
    table = _table(doc)
    assert "WITHOUT migration(s) 11" in table
    assert "| endpoint (as) | statement | 1k refs / 10 CMs | 1M refs / 10,000 CMs |" in table
    assert "| GET /a (admin) | **whole call** | 1.00 / 1.00 | 2.50 / 2.50 |" in table
    assert "| | s | 1.00 / 2.00 | 2.50 / 5.00 |" in table
    assert "| GET /b (partner) | s | 1.00 / 1.00 | 2.50 / 2.50 |" in table
    assert table.endswith("sequential scans of 10,000+ rows at 1M: none")
