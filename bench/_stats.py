"""Statements and transactions the services ran, from pg_stat_statements, for per-referral counts."""

from __future__ import annotations

import asyncpg

from shared.db import SERVICE_ROLE

__all__ = ["PgCounts", "pg_counts"]

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


async def pg_counts(dsn: str) -> PgCounts:
    """The services' statements (without transaction control), explicit transactions, and everything."""
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(_COUNTS, SERVICE_ROLE)
    finally:
        await conn.close()
    assert row is not None
    return PgCounts(int(row[0]), int(row[1]), int(row[2]))
