"""Statements and transactions the services ran, from pg_stat_statements, for per-referral counts."""

from __future__ import annotations

import asyncpg

from shared.db import SERVICE_ROLE

__all__ = ["PgCounts", "StatementTimes", "pg_counts", "statement_times", "top_statements"]

# Everything the services' role ran; transaction control counted apart (COMMIT/ROLLBACK = one
# explicit transaction each; BEGIN and SAVEPOINT are not work of their own).
_COUNTS = r"""
SELECT coalesce(sum(s.calls) FILTER (
           WHERE s.query !~* '^\s*(BEGIN|START|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\M'), 0)::bigint,
       coalesce(sum(s.calls) FILTER (WHERE s.query ~* '^\s*(COMMIT|END|ROLLBACK)\s*;?\s*$'), 0)::bigint,
       coalesce(sum(s.calls), 0)::bigint
FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
WHERE r.rolname = $1
"""


class PgCounts:
    """Cumulative counts; subtract two to get a step's."""

    def __init__(self, statements: int, transactions: int, all_statements: int) -> None:
        self.statements = statements
        self.transactions = transactions
        self.all_statements = all_statements

    def __sub__(self, other: PgCounts) -> PgCounts:
        return PgCounts(
            self.statements - other.statements,
            self.transactions - other.transactions,
            self.all_statements - other.all_statements,
        )


async def _services_stats(dsn: str, sql: str) -> list[asyncpg.Record]:
    """`sql` over pg_stat_statements for the services' role ($1), on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql, SERVICE_ROLE)
    finally:
        await conn.close()


async def pg_counts(dsn: str) -> PgCounts:
    """The services' statements (without transaction control), explicit transactions, and everything."""
    (row,) = await _services_stats(dsn, _COUNTS)
    return PgCounts(int(row[0]), int(row[1]), int(row[2]))


# Per statement (pg_stat_statements' normalised text), what the services' role ran: for the
# per-step "top statements" (which statements PostgreSQL's time per referral goes to).
_TIMES = r"""
SELECT s.queryid, s.query, s.calls, s.rows, s.total_exec_time, s.total_plan_time, s.wal_records
FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
WHERE r.rolname = $1
"""

StatementTimes = dict[int, tuple[str, int, int, float, float, int]]


async def statement_times(dsn: str) -> StatementTimes:
    """Cumulative calls, rows, execution and planning ms and WAL records per statement."""
    rows = await _services_stats(dsn, _TIMES)
    return {
        int(r["queryid"]): (
            str(r["query"]),
            int(r["calls"]),
            int(r["rows"]),
            float(r["total_exec_time"]),
            float(r["total_plan_time"]),
            int(r["wal_records"]),
        )
        for r in rows
        if r["queryid"] is not None
    }


def top_statements(
    before: StatementTimes, after: StatementTimes, referrals: int, n: int = 25
) -> list[dict[str, object]]:
    """The ``n`` statements with the most execution time between two snapshots, per referral."""
    per = max(1, referrals)
    out: list[dict[str, object]] = []
    for qid, (query, calls, rows, exec_ms, plan_ms, wal) in after.items():
        _, calls0, rows0, exec0, plan0, wal0 = before.get(qid, ("", 0, 0, 0.0, 0.0, 0))
        if calls == calls0:
            continue
        out.append(
            {
                "query": " ".join(query.split())[:160],
                "calls_per_referral": round((calls - calls0) / per, 3),
                "rows_per_referral": round((rows - rows0) / per, 2),
                "exec_us_per_referral": round(1000 * (exec_ms - exec0) / per, 1),
                "plan_us_per_referral": round(1000 * (plan_ms - plan0) / per, 1),
                "wal_records_per_referral": round((wal - wal0) / per, 2),
            }
        )
    out.sort(key=lambda t: -float(str(t["exec_us_per_referral"])))
    return out[:n]
