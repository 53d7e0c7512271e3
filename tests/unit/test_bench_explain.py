"""bench.explain's pure parts: literals for EXECUTE, the nested plans auto_explain logs, the plan summary."""

from __future__ import annotations

import json
from typing import Any

from bench._replay import BENCH_APP
from bench.explain import _literal, _nested, _shape


def _logged(app: str, query: str, ms: float, plan: dict[str, Any]) -> str:
    body = json.dumps({"Query Text": query, "Plan": plan}, indent=2)
    return f"@@|42|{app}|LOG:  duration: {ms} ms  plan:\n{body}\n"


def test_literal_quotes_and_nulls() -> None:
    assert _literal(None) == "NULL"
    assert _literal("it's") == "'it''s'"
    assert _literal("\\x00ff") == "'\\x00ff'"


def test_nested_keeps_statements_inside_functions_and_triggers_only() -> None:
    fk: dict[str, Any] = {
        "Node Type": "Index Scan",
        "Index Name": "referrals_pkey",
        "Relation Name": "referrals",
    }
    seq = {
        "Node Type": "Seq Scan",
        "Relation Name": "staff",
        "Actual Rows": 1,
        "Rows Removed by Filter": 20000,
    }
    text = (
        _logged(BENCH_APP, 'SELECT 1 FROM ONLY "public"."referrals" x WHERE "id" = $1', 0.01, fk)
        + _logged(BENCH_APP, 'SELECT 1 FROM ONLY "public"."referrals" x WHERE "id" = $1', 0.03, fk)
        + _logged(BENCH_APP, "SELECT id FROM staff WHERE role = 'supervisor'", 2.5, seq)
        # The replay's own top-level statements, and other sessions' plans, are not nested work.
        + _logged(BENCH_APP, "EXPLAIN (ANALYZE) EXECUTE bench_stmt_1('x')", 1.0, fk)
        + _logged("refnet-notify", "SELECT 2", 1.0, fk)
        + "@@|42|refnet-bench|LOG:  statement: COMMIT\n"
    )
    found = {s["name"]: s for s in _nested(text, referrals=2)}
    assert set(found) == {"foreign key check on referrals", "SELECT id FROM staff WHERE role = 'supervisor'"}
    fk_check = found["foreign key check on referrals"]
    assert (fk_check["runs"], fk_check["per_referral"], fk_check["max_ms"]) == (2, 1.0, 0.03)
    assert found["SELECT id FROM staff WHERE role = 'supervisor'"]["big_seq_scans"] == ["staff"]


def test_shape_lists_scans_and_writes_without_the_bare_results() -> None:
    nodes = [
        "ModifyTable on notifications (rows 0)",
        "  Result (rows 1)",
        "  Index Scan using staff_pkey on staff (rows 1)",
        "  Index Scan using staff_pkey on staff (rows 1)",
    ]
    assert _shape(nodes) == "ModifyTable on notifications; Index Scan using staff_pkey on staff"
    assert _shape(["Result (rows 1)", "  Result (rows 0)"]) == "Result"
