"""The fixed reference ceiling: a minimal two-transaction referral under pgbench, on scratch tables.

It measures the machine, not our SQL: one transaction writes a referral and its outbox row, a second
takes one unit of a case manager's capacity (conditionally, as routing does), records the offer and
its outbox row. Its shape never follows the services' code, so `ratio_to_reference` tracks progress
against what this PostgreSQL on this machine can commit, whatever the services' statements become.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

__all__ = ["REFERENCE_SCHEMA", "REFERENCE_SCRIPT", "prepare_reference"]

REFERENCE_SCHEMA = "bench_reference"
# Case managers to spread the capacity updates over (the demo network has a few dozen).
REFERENCE_CASE_MANAGERS = 32

_TABLES = f"""
DROP SCHEMA IF EXISTS {REFERENCE_SCHEMA} CASCADE;
CREATE SCHEMA {REFERENCE_SCHEMA};
CREATE TABLE {REFERENCE_SCHEMA}.referrals (
    id uuid PRIMARY KEY, partner_id uuid NOT NULL, status text NOT NULL, region text NOT NULL,
    needs text[] NOT NULL, urgency text NOT NULL, received_at timestamptz NOT NULL DEFAULT now(),
    sealed bytea NOT NULL
);
CREATE TABLE {REFERENCE_SCHEMA}.outbox (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_id uuid NOT NULL UNIQUE,
    subject text NOT NULL, payload bytea NOT NULL, created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE {REFERENCE_SCHEMA}.case_managers (
    id integer PRIMARY KEY, capacity integer NOT NULL, open_count integer NOT NULL DEFAULT 0
);
CREATE TABLE {REFERENCE_SCHEMA}.assignments (
    id uuid PRIMARY KEY, referral_id uuid NOT NULL, case_manager_id integer NOT NULL,
    state text NOT NULL, offered_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {REFERENCE_SCHEMA}.case_managers (id, capacity)
    SELECT g, 1000000000 FROM generate_series(1, {REFERENCE_CASE_MANAGERS}) AS g;
"""

REFERENCE_SCRIPT = f"""\\set cm random(1, {REFERENCE_CASE_MANAGERS})
BEGIN;
INSERT INTO {REFERENCE_SCHEMA}.referrals (id, partner_id, status, region, needs, urgency, sealed)
    VALUES (gen_random_uuid(), '00000000-0000-0000-0000-000000000001', 'received', 'south_la',
            ARRAY['housing','counseling'], 'routine', decode(repeat('ab', 200), 'hex'));
INSERT INTO {REFERENCE_SCHEMA}.outbox (event_id, subject, payload)
    VALUES (gen_random_uuid(), 'refnet.referral.received', decode(repeat('cd', 150), 'hex'));
COMMIT;
BEGIN;
UPDATE {REFERENCE_SCHEMA}.case_managers SET open_count = open_count + 1
    WHERE id = :cm AND open_count < capacity;
INSERT INTO {REFERENCE_SCHEMA}.assignments (id, referral_id, case_manager_id, state)
    VALUES (gen_random_uuid(), gen_random_uuid(), :cm, 'offered');
INSERT INTO {REFERENCE_SCHEMA}.outbox (event_id, subject, payload)
    VALUES (gen_random_uuid(), 'refnet.referral.assigned', decode(repeat('ef', 150), 'hex'));
COMMIT;
"""


async def prepare_reference(dsn: str, workdir: Path) -> Path:
    """Create the scratch tables (as the owner) and write the pgbench script; returns its path."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(_TABLES)
    finally:
        await conn.close()
    path = workdir / "pgbench_reference.sql"
    path.write_text(REFERENCE_SCRIPT)
    return path
