"""`python -m bench.explain`: EXPLAIN (ANALYZE, BUFFERS) of every statement a referral costs, at 1M referrals.

Not a test: it prints a Markdown table (and optionally JSON) for people to read.

How (so the statements are the services' own, with the arguments they really bound, and follow the code
as it changes):

1. the embedded PostgreSQL and NATS with the demo network, intake, routing and notify start; a few
   warm-up referrals go through them (so every consumer, protocol and token kind exists once);
2. the services stop and the database is filled, set-based (``generate_series``, one statement per
   table), with ``--referrals`` closed past referrals and what each left behind (offer, routing decision,
   status transition, in-app notification, email delivery, processed-message claims for every consumer,
   idempotency record, data key, sealed PII, consent, sealed audit records, youth blind indexes and matches, protocol steps), ``--case-managers`` case
   managers, then VACUUM ANALYZE;
3. a copy of that database is taken (``CREATE DATABASE ... TEMPLATE``): the state before the capture;
4. the services start again and ``--capture`` referrals go through them with ``log_statement = all``
   (the pgbench ceiling's capture, `bench._replay`): every transaction with its bound parameters;
5. the services stop and the capture is replayed, in order, in the copy, as the services' role (row-level
   security on, each transaction's own identity): every statement runs as
   ``EXPLAIN (ANALYZE, BUFFERS)`` (``PREPARE`` + ``EXPLAIN EXECUTE`` with the logged values, so the
   parameter types are the ones asyncpg got), and commits, so each statement finds the state it found in
   the services. A statement with parameters is also planned generically (``EXPLAIN (GENERIC_PLAN)``):
   asyncpg's prepared statements may settle on that plan after five executions.

The table names each statement by its .sql file (or its first words), says how often a referral runs
it, its execution time, its plan's shape, and flags sequential scans of large tables (read at run time,
or planned in the generic plan).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bench._load import make_bodies, post_sequentially
from bench._measure import wait_drained
from bench._platform import ROOT, prepare_bench_database, run_on_platform
from bench._replay import _PREFIX, BENCH_APP, Statement, parse_log, start_capture, stop_capture
from bench.dashboard import _GENERIC_PLAN_FN, _nodes, _seq_scans
from refnet_dev.platform import Platform
from shared.codes import NEED_CODES
from shared.db import service_dsn
from shared.logging import configure_logging

__all__ = ["main"]

REFERRALS = 1_000_000
CASE_MANAGERS = 1_000
CAPTURE = 10
WARMUP = 20
COPY = "refnet_explain"
# A sequential scan is flagged when it reads (or the generic plan expects to read) this many rows.
BIG_SCAN = 10_000
# Tables filled with one row per referral per kind (tokens, protocol steps) are capped at this many rows
# so the fill stays minutes, not an hour; the table says how many rows each table has.
PER_KIND_CAP = 3_000_000

_AUTO_EXPLAIN = {
    "session_preload_libraries": "auto_explain",
    "auto_explain.log_min_duration": "0",
    "auto_explain.log_analyze": "on",
    "auto_explain.log_buffers": "on",
    "auto_explain.log_nested_statements": "on",
    "auto_explain.log_format": "json",
}
_EXPLAINABLE = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")
# asyncpg's type introspection on a fresh connection: not a per-referral cost.
_INTROSPECTION = re.compile(
    r"\bpg_catalog\.pg_type\b|\bFROM\s+pg_type\b|set_config\('jit'|current_setting\('jit'\)", re.IGNORECASE
)


def _progress(message: str) -> None:
    print(f"bench.explain: {message}", file=sys.stderr, flush=True)


# ---- filling the database --------------------------------------------------------------------------

_CASE_MANAGERS = """
WITH n AS (SELECT count(*) AS have FROM case_managers),
made AS (
    INSERT INTO staff (id, email, display_name, role, password_hash)
    SELECT gen_random_uuid(), 'bench-cm-' || g || '@bench.invalid', 'Bench CM ' || g, 'case_manager', '!'
    FROM n, generate_series(n.have + 1, $1) g
    RETURNING id
),
numbered AS (SELECT id, row_number() OVER (ORDER BY id) AS i FROM made),
tmpl AS (SELECT c.*, row_number() OVER (ORDER BY staff_id) AS i, count(*) OVER () AS k FROM case_managers c)
INSERT INTO case_managers (staff_id, regions, needs, languages, capacity, active_count, status, specialisms)
SELECT m.id, t.regions, t.needs, t.languages, t.capacity, 0, 'active', t.specialisms
FROM numbered m JOIN tmpl t ON t.i = 1 + (m.i % t.k)
"""

# One row per past referral: its ids and who handled it, for every table's insert below.
_GEN = """
CREATE TEMP TABLE gen AS
SELECT g, gen_random_uuid() AS id, gen_random_uuid() AS aid,
       p.ids[1 + g % cardinality(p.ids)] AS partner_id,
       c.ids[1 + g % cardinality(c.ids)] AS cm,
       c.regions[1 + g % cardinality(c.ids)] AS region,
       now() - interval '31 days' - g * ((interval '5 years') / $1) AS t
FROM generate_series(1, $1) g,
     (SELECT array_agg(id ORDER BY id) AS ids FROM partners WHERE kind <> 'coordinating_agency') p,
     (SELECT array_agg(staff_id ORDER BY staff_id) AS ids, array_agg(regions[1] ORDER BY staff_id) AS regions
      FROM case_managers) c
"""

_FILL: tuple[tuple[str, str], ...] = (
    (
        "referrals",
        """INSERT INTO referrals (id, partner_id, status, region, needs, language, urgency, age_years,
               received_at, updated_at, assigned_at, accepted_at, engaged_at, closed_at, close_reason, youth_key)
           SELECT id, partner_id, 'closed', region, ARRAY[($1::text[])[1 + g % cardinality($1::text[])]],
                  CASE WHEN g % 3 = 0 THEN 'es' ELSE 'en' END,
                  CASE WHEN g % 10 = 0 THEN 'urgent' ELSE 'routine' END, 10 + g % 15,
                  t, t + interval '90 days', t + interval '1 second', t + interval '2 hours',
                  t + interval '3 days', t + interval '90 days', 'goals_met', sha256(('youth' || g)::bytea)
           FROM gen""",
    ),
    (
        "assignments",
        """INSERT INTO assignments (id, referral_id, case_manager_id, state, offered_at, respond_by, responded_at)
           SELECT aid, id, cm, 'accepted', t + interval '1 second', t + interval '4 hours', t + interval '2 hours'
           FROM gen""",
    ),
    (
        "routing_decisions",
        """INSERT INTO routing_decisions (id, referral_id, decided_at, outcome, chosen_id, detail, policy_version)
           SELECT gen_random_uuid(), id, t + interval '1 second', 'assigned', cm,
                  jsonb_build_object('outcome', 'assigned', 'candidates', 3), 'bench'
           FROM gen""",
    ),
    (
        "referral_transitions",
        """INSERT INTO referral_transitions (referral_id, from_status, to_status, actor_role, at)
           SELECT id, s.f, s.t, 'system', gen.t + s.o
           FROM gen, (VALUES ('received', 'assigned', interval '1 second'),
                             ('assigned', 'accepted', interval '2 hours'),
                             ('accepted', 'closed', interval '90 days')) AS s(f, t, o)""",
    ),
    (
        "notifications",
        """INSERT INTO notifications (recipient_id, kind, event_id, referral_id, assignment_id, created_at, read_at)
           SELECT cm, 'offer', gen_random_uuid(), id, aid, t, t + interval '1 hour' FROM gen""",
    ),
    (
        "deliveries",
        """INSERT INTO deliveries (id, event_id, kind, channel, recipient_id, staff_id, referral_id,
               assignment_id, payload, state, attempts, next_attempt_at, created_at, updated_at, delivered_at)
           SELECT gen_random_uuid(), gen_random_uuid(), 'offer', 'email', cm, cm, id, aid,
                  jsonb_build_object('assignment_id', aid), 'delivered', 1, t, t, t, t
           FROM gen""",
    ),
    (
        "processed_messages",
        """INSERT INTO processed_messages (consumer, event_id, processed_at)
           SELECT c.consumer, gen_random_uuid(), t
           FROM gen, (SELECT DISTINCT consumer FROM processed_messages) c""",
    ),
    (
        "idempotency_keys",
        """INSERT INTO idempotency_keys (partner_id, key, request_hash, status_code, response_body,
               referral_id, created_at)
           SELECT partner_id, 'bench-' || g, sha256(('req' || g)::bytea), 201, '\\x7b7d'::bytea, id, t FROM gen""",
    ),
    (
        "referral_keys",
        """INSERT INTO referral_keys (referral_id, key_id, wrapped_key, created_at, partner_id)
           SELECT id, k.key_id, sha256(('key' || g)::bytea), t, partner_id
           FROM gen, (SELECT key_id FROM referral_keys ORDER BY created_at DESC LIMIT 1) k""",
    ),
    (
        "referral_pii",
        """INSERT INTO referral_pii (referral_id, partner_id, nonce, ciphertext)
           SELECT id, partner_id, substr(sha256(('n' || g)::bytea), 1, 12),
                  sha256(('c' || g)::bytea) || sha256(('d' || g)::bytea) || sha256(('e' || g)::bytea)
           FROM gen""",
    ),
    (
        "consents",
        # Ended with the referral: a live, expiring consent would be the renewal reminder's work.
        """INSERT INTO consents (referral_id, partner_id, method, scope, obtained_at, expires_at, withdrawn_at,
               withdrawn_by)
           SELECT id, partner_id, c.method, c.scope, t, t + interval '1 year', t + interval '90 days', 'bench'
           FROM gen, (SELECT method, scope FROM consents LIMIT 1) c""",
    ),
    (
        "audit_log",
        # Sealed history below the real chain (negative seq): the sealer continues from the highest seq.
        """INSERT INTO audit_log (at, actor_role, actor_id, partner_id, action, target_type, target_id, seq,
               prev_hash, hash)
           SELECT t + a.o, 'partner', partner_id::text, partner_id::text, a.action, 'referral', id::text,
                  -2 * g - a.n, sha256(('p' || g || a.n)::bytea), sha256(('h' || g || a.n)::bytea)
           FROM gen, (VALUES (0, 'pii.write', interval '0'), (1, 'referral.view', interval '1 day')) a(n, action, o)""",
    ),
    (
        "youth_matches",
        # One referral in twenty: probably the youth of the referral before it (linked or still suggested).
        """INSERT INTO youth_matches (id, referral_id, other_referral_id, score, reasons, status, found_at)
           SELECT gen_random_uuid(), a.id, b.id, 0.9, ARRAY['exact'],
                  CASE WHEN a.g % 40 = 0 THEN 'linked' ELSE 'suggested' END, a.t
           FROM gen a JOIN gen b ON b.g = a.g + 1 WHERE a.g % 20 = 0""",
    ),
    (
        "youth_blind",
        # Every referral's blind indexes; a token value is shared by at most two referrals, the phone
        # present for half of them.
        """INSERT INTO youth_blind (referral_id, dob, exact, phone, first, last, first_tri)
           SELECT id, sha256(('dob' || g % 700000)::bytea), sha256(('exact' || g % 700000)::bytea),
                  CASE WHEN g % 2 = 0 THEN sha256(('phone' || g % 700000)::bytea) END,
                  sha256(('first' || g % 700000)::bytea), sha256(('last' || g % 700000)::bytea),
                  ARRAY(SELECT sha256(('tri' || (g + k) % 5000)::bytea) FROM generate_series(1, 6) k)
           FROM gen""",
    ),
    (
        "protocol_steps",
        """INSERT INTO protocol_steps (referral_id, partner_id, code, position, protocol_version, roles,
               clock_from, clock_minutes, reference_required, outcomes, escalate_to, due_at, completed_at,
               completed_by, completed_role)
           SELECT gen.id, gen.partner_id, s.code, s.position, s.protocol_version, s.roles, s.clock_from,
                  s.clock_minutes, s.reference_required, s.outcomes, s.escalate_to, t + interval '1 day',
                  t + interval '2 hours', cm, 'case_manager'
           FROM (SELECT DISTINCT ON (code) * FROM protocol_steps ORDER BY code) s, gen
           WHERE g <= $1::bigint / (SELECT greatest(count(DISTINCT code), 1) FROM protocol_steps)""",
    ),
)


async def _fill(dsn: str, referrals: int, case_managers: int) -> dict[str, Any]:
    """Grow the warmed-up database to ``referrals`` past referrals; rows and seconds per table."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": BENCH_APP})
    timings: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        await conn.execute(_CASE_MANAGERS, case_managers)
        timings["case_managers"] = round(time.perf_counter() - t0, 1)
        await conn.execute(_GEN, referrals)
        # Bulk history consistent by construction: no FK checks or NOTIFY triggers per row.
        await conn.execute("SET session_replication_role = replica")
        for table, sql in _FILL:
            _progress(f"  filling {table} ...")
            t0 = time.perf_counter()
            args: list[Any] = (
                [list(NEED_CODES)] if table == "referrals" else [PER_KIND_CAP] if "$1" in sql else []
            )
            await conn.execute(sql, *args)
            timings[table] = round(time.perf_counter() - t0, 1)
        await conn.execute("SET session_replication_role = DEFAULT")
        _progress("  VACUUM ANALYZE ...")
        t0 = time.perf_counter()
        await conn.execute("VACUUM ANALYZE")
        timings["vacuum_analyze"] = round(time.perf_counter() - t0, 1)
        rows = {}
        for table in [t for t, _ in _FILL] + ["case_managers", "staff", "outbox"]:
            rows[table] = int(await conn.fetchval(f"SELECT count(*) FROM {table}"))
        return {"rows": rows, "seconds": timings}
    finally:
        await conn.close()


# ---- the capture and its replay --------------------------------------------------------------------


def _sql_files() -> dict[str, str]:
    """Every .sql file of the services and shared/, by its whitespace-normalised text."""
    out: dict[str, str] = {}
    for base in ("services", "shared"):
        for path in (ROOT / base).rglob("*.sql"):
            if "migrations" not in path.parts:
                out[" ".join(path.read_text().split())] = str(path.relative_to(ROOT))
    return out


def _code(sql: str) -> str:
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return " ".join(" ".join(lines).split())


def _literal(value: str | None) -> str:
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


@dataclass
class Explained:
    """Every run of one statement text in the replay."""

    name: str
    sql: str
    runs: list[dict[str, Any]] = field(default_factory=list)
    generic: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


def _summary(doc: Any) -> dict[str, Any]:
    top = (json.loads(doc) if isinstance(doc, str) else doc)[0]
    plan = top["Plan"]
    return {
        "execution_ms": round(float(top.get("Execution Time", 0.0)), 3),
        "planning_ms": round(float(top.get("Planning Time", 0.0)), 3),
        "triggers_ms": round(sum(float(t.get("Time", 0.0)) for t in top.get("Triggers", [])), 3),
        "shared_hit": int(plan.get("Shared Hit Blocks", 0)),
        "shared_read": int(plan.get("Shared Read Blocks", 0)),
        "nodes": _nodes(plan),
        "seq_scans": _seq_scans(plan),
    }


def _generic_seq_scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Sequential scans the generic plan expects, with the rows the planner thinks the table has."""
    found = []
    if plan["Node Type"] == "Seq Scan":
        found.append(
            {"table": plan.get("Relation Name"), "plan_rows": round(float(plan.get("Plan Rows", 0)))}
        )
    for child in plan.get("Plans", []):
        found += _generic_seq_scans(child)
    return found


_names = itertools.count()


async def _explain_one(conn: asyncpg.Connection, stmt: Statement, entry: Explained, in_tx: bool) -> None:
    sql = stmt.sql.rstrip().rstrip(";")
    if in_tx:
        await conn.execute("SAVEPOINT bench_explain")
    try:
        if stmt.params:
            # A fresh name each time: a failed EXECUTE leaves its statement behind, harmlessly.
            name = f"bench_stmt_{next(_names)}"
            await conn.execute(f"PREPARE {name} AS {sql}")
            values = ", ".join(_literal(stmt.params.get(i)) for i in range(1, max(stmt.params) + 1))
            doc = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE {name}({values})")
            await conn.execute(f"DEALLOCATE {name}")
            if entry.generic is None:
                gdoc = await conn.fetchval("SELECT pg_temp.bench_generic_plan($1)", sql)
                gplan = (json.loads(gdoc) if isinstance(gdoc, str) else gdoc)[0]["Plan"]
                entry.generic = {
                    "nodes": _nodes(gplan, analyzed=False),
                    "seq_scans": _generic_seq_scans(gplan),
                }
        else:
            doc = await conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
        entry.runs.append(_summary(doc))
        if in_tx:
            await conn.execute("RELEASE SAVEPOINT bench_explain")
    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        entry.errors.append(f"{type(exc).__name__}: {exc}".splitlines()[0][:200])
        if in_tx:
            await conn.execute("ROLLBACK TO SAVEPOINT bench_explain")


async def _run_plain(conn: asyncpg.Connection, stmt: Statement) -> None:
    if not stmt.params:
        await conn.execute(stmt.sql)
        return
    name = f"bench_plain_{next(_names)}"
    await conn.execute(f"PREPARE {name} AS {stmt.sql.rstrip().rstrip(';')}")
    values = ", ".join(_literal(stmt.params.get(i)) for i in range(1, max(stmt.params) + 1))
    await conn.execute(f"EXECUTE {name}({values})")
    await conn.execute(f"DEALLOCATE {name}")


async def _replay(dsn: str, units: list[list[Statement]], skipped: list[str]) -> list[Explained]:
    """Replay the captured units in order on one connection, EXPLAIN ANALYZE-ing every statement."""
    files = _sql_files()
    found: dict[str, Explained] = {}
    conn = await asyncpg.connect(dsn, server_settings={"application_name": BENCH_APP})
    try:
        await conn.execute(_GENERIC_PLAN_FN)
        for unit in units:
            in_tx = False
            for stmt in unit:
                if stmt.failed:
                    continue
                code = _code(stmt.sql)
                word = code.split(None, 1)[0].upper().rstrip(";") if code else ""
                explainable = word in _EXPLAINABLE and (stmt.params or ";" not in code.rstrip(";"))
                if _INTROSPECTION.search(code):
                    continue  # read-only, and not a per-referral cost
                if not explainable:
                    # BEGIN (with the caller's identity), COMMIT, the pool's reset, LISTEN ...
                    try:
                        await _run_plain(conn, stmt)
                    except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                        skipped.append(f"{code[:60]}: {type(exc).__name__}: {exc}".splitlines()[0][:200])
                        if in_tx:
                            await conn.execute("ROLLBACK")
                            in_tx = False
                            break
                    if word in ("BEGIN", "START"):
                        in_tx = True
                    elif word in ("COMMIT", "ROLLBACK", "END"):
                        in_tx = False
                    continue
                key = " ".join(stmt.sql.split())
                entry = found.get(key)
                if entry is None:
                    entry = found[key] = Explained(files.get(key, code[:60]), key)
                await _explain_one(conn, stmt, entry, in_tx)
            if in_tx:  # a unit cut off by the capture's end
                await conn.execute("ROLLBACK")
    finally:
        await conn.close()
    return list(found.values())


def _report(entry: Explained, referrals: int) -> dict[str, Any]:
    runs = entry.runs
    ms = [r["execution_ms"] for r in runs]
    slowest = max(runs, key=lambda r: r["execution_ms"]) if runs else None
    big = sorted(
        {s["table"] for r in runs for s in r["seq_scans"] if s["rows_read"] >= BIG_SCAN}
        | {s["table"] for s in (entry.generic or {}).get("seq_scans", []) if s["plan_rows"] >= BIG_SCAN}
    )
    return {
        "name": entry.name,
        "per_referral": round(len(runs) / referrals, 2),
        "runs": len(runs),
        "p50_ms": round(statistics.median(ms), 3) if ms else None,
        "max_ms": round(max(ms), 3) if ms else None,
        "triggers_ms_max": max((r["triggers_ms"] for r in runs), default=0.0),
        "buffers_max": max((r["shared_hit"] + r["shared_read"] for r in runs), default=0),
        "plan": slowest["nodes"] if slowest else [],
        "generic_plan": (entry.generic or {}).get("nodes"),
        "big_seq_scans": big,
        "errors": entry.errors,
        "sql": entry.sql,
    }


_LOGGED_PLAN = re.compile(r"^duration: ([0-9.]+) ms  plan:\n", re.DOTALL)
_OURS = (
    "EXPLAIN",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "BEGIN",
    "SAVEPOINT",
    "RELEASE",
    "ROLLBACK",
    "SELECT PG_TEMP.",
)
_FK_CHECK = re.compile(r'SELECT 1 FROM ONLY "public"\."(\w+)"')


def _nested(log_text: str, referrals: int) -> list[dict[str, Any]]:
    """The plans auto_explain logged for statements run inside functions and triggers during the replay."""
    entries: list[tuple[str, str]] = []  # app, message
    for line in log_text.splitlines():
        m = _PREFIX.match(line)
        if m:
            entries.append((m.group(2), line[m.end() :] if m.group(3) == "LOG" else ""))
        elif entries:
            entries[-1] = (entries[-1][0], entries[-1][1] + "\n" + line)
    found: dict[str, Explained] = {}
    for app, message in entries:
        m = _LOGGED_PLAN.match(message)
        if app != BENCH_APP or m is None:
            continue
        try:
            doc = json.loads(message[m.end() :])
        except ValueError:
            continue
        text = " ".join(str(doc.get("Query Text", "")).split())
        if text.upper().startswith(_OURS):
            continue
        fk = _FK_CHECK.search(text)
        name = f"foreign key check on {fk.group(1)}" if fk else _code(text)[:70]
        entry = found.setdefault(name, Explained(name, text))
        entry.runs.append(_summary([{**doc, "Execution Time": float(m.group(1))}]))
    # Whole top-level statements are logged too when they ran as is (no parameters): already reported.
    return [_report(e, referrals) for e in sorted(found.values(), key=lambda e: e.name)]


# ---- the run ---------------------------------------------------------------------------------------


async def _copy(plat: Platform) -> None:
    """Copy the services' database (nobody connected to it) with auto_explain on for the copy's sessions."""
    assert plat.pg is not None
    source = plat.database or "postgres"
    conn = await asyncpg.connect(plat.pg.uri("template1"), server_settings={"application_name": BENCH_APP})
    try:
        await conn.execute(f'CREATE DATABASE {COPY} TEMPLATE "{source}" STRATEGY FILE_COPY')
        # What runs inside functions and triggers (EXPLAIN shows a Function Scan only): every nested
        # statement's plan, analysed, into the server log, for the replay's sessions in the copy only.
        for setting, value in _AUTO_EXPLAIN.items():
            await conn.execute(f"ALTER DATABASE {COPY} SET {setting} = '{value}'")
    finally:
        await conn.close()


def _measure(args: argparse.Namespace, plat: Platform) -> dict[str, Any]:
    _progress(f"starting PostgreSQL and NATS in {plat.workdir}")
    plat.start_servers()
    asyncio.run(prepare_bench_database(plat))
    assert plat.pg is not None
    bodies = make_bodies(200, seed=7)
    plat.start_all(timeout=90)
    _progress(f"{WARMUP} warm-up referrals")
    post_sequentially(plat, bodies, WARMUP, 0)
    asyncio.run(wait_drained(plat.admin_dsn, 30))
    time.sleep(1.0)
    plat.stop_all()
    _progress(f"filling: {args.referrals:,} referrals, {args.case_managers:,} case managers")
    t0 = time.perf_counter()
    filled = asyncio.run(_fill(plat.admin_dsn, args.referrals, args.case_managers))
    fill_s = time.perf_counter() - t0
    _progress(f"  filled in {fill_s:.0f} s: {filled['rows']}")
    asyncio.run(_copy(plat))
    plat.start_all(timeout=90)
    offset = plat.pg.log_path.stat().st_size
    asyncio.run(start_capture(plat.admin_dsn))
    try:
        _progress(f"capturing the SQL of {args.capture} referrals")
        post_sequentially(plat, bodies, args.capture, WARMUP)
        asyncio.run(wait_drained(plat.admin_dsn, 60))
        time.sleep(2.0)  # the relays' and the dispatcher's follow-up work
    finally:
        asyncio.run(stop_capture(plat.admin_dsn))
    plat.stop_all()
    with plat.pg.log_path.open("rb") as log:
        log.seek(offset)
        capture = parse_log(log.read().decode(errors="replace"))
    _progress(f"replaying {capture.statements} statements with EXPLAIN ANALYZE in the copy")
    copy_dsn = service_dsn(plat.pg.uri(COPY))
    skipped: list[str] = []
    log_offset = plat.pg.log_path.stat().st_size
    explained = asyncio.run(_replay(copy_dsn, capture.units, skipped))
    with plat.pg.log_path.open("rb") as log:
        log.seek(log_offset)
        nested = _nested(log.read().decode(errors="replace"), args.capture)
    statements = sorted(
        (_report(e, args.capture) for e in explained), key=lambda s: (-(s["max_ms"] or 0.0), s["name"])
    )
    server = asyncio.run(_server_version(plat.admin_dsn))
    return {
        "benchmark": "explain",
        "postgres": server,
        "referrals": args.referrals,
        "case_managers": args.case_managers,
        "captured_referrals": args.capture,
        "fill_seconds": round(fill_s, 1),
        "tables": filled["rows"],
        "fill_seconds_per_table": filled["seconds"],
        "statements": statements,
        "nested": sorted(nested, key=lambda s: (-(s["max_ms"] or 0.0), s["name"])),
        "not_replayed": skipped,
    }


async def _server_version(dsn: str) -> str:
    conn = await asyncpg.connect(dsn, server_settings={"application_name": BENCH_APP})
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def _shape(nodes: list[str], limit: int = 5) -> str:
    """The plan's scans and writes on one line (the row-level-security init plans' bare Results left out)."""
    parts: list[str] = []
    for n in nodes:
        n = re.sub(r" \(rows [^)]*\)", "", n).strip()
        if (" on " in n or n.startswith(("Function Scan", "Seq Scan"))) and n not in parts:
            parts.append(n)
    if not parts:
        parts = [re.sub(r" \(rows [^)]*\)", "", nodes[0]).strip()] if nodes else []
    return "; ".join(parts[:limit]) + (" …" if len(parts) > limit else "")


def _table(doc: dict[str, Any]) -> str:
    t = doc["tables"]
    lines = [
        f"EXPLAIN (ANALYZE, BUFFERS) of the statements of {doc['captured_referrals']} referrals at"
        f" {doc['referrals']:,} past referrals ({doc['case_managers']:,} case managers), PostgreSQL"
        f" {doc['postgres']}; database filled in {doc['fill_seconds']:.0f} s",
        "",
        "rows: " + ", ".join(f"{k} {v:,}" for k, v in t.items()),
        "",
        "| statement | per referral | exec ms p50 / max | triggers ms | buffers | plan (slowest run) |"
        " big seq scan |",
        "|---|---:|---:|---:|---:|---|---|",
    ]
    for s in doc["statements"]:
        timing = "error" if s["p50_ms"] is None else f"{s['p50_ms']:.3f} / {s['max_ms']:.3f}"
        flag = ", ".join(s["big_seq_scans"]) or "-"
        lines.append(
            f"| {s['name']} | {s['per_referral']:g} | {timing} | {s['triggers_ms_max']:.3f} |"
            f" {s['buffers_max']:,} | {_shape(s['plan'])} | {flag} |"
        )
    lines += [
        "",
        "inside functions and triggers (auto_explain, nested statements):",
        "",
        "| statement | per referral | exec ms p50 / max | buffers | plan (slowest run) | big seq scan |",
        "|---|---:|---:|---:|---|---|",
    ]
    for s in doc["nested"]:
        flag = ", ".join(s["big_seq_scans"]) or "-"
        lines.append(
            f"| {s['name']} | {s['per_referral']:g} | {s['p50_ms']:.3f} / {s['max_ms']:.3f} |"
            f" {s['buffers_max']:,} | {_shape(s['plan'])} | {flag} |"
        )
    errors = [f"- {s['name']}: {e}" for s in doc["statements"] for e in s["errors"][:1]]
    if errors:
        lines += ["", "replay errors (state the copy lacked, or a unit that depended on a concurrent one):"]
        lines += errors
    if doc["not_replayed"]:
        lines += ["", "not replayed (the rest of their transaction was rolled back):"]
        lines += [f"- {x}" for x in doc["not_replayed"]]
    flagged = [s for s in doc["statements"] + doc["nested"] if s["big_seq_scans"]]
    lines += ["", f"sequential scans of {BIG_SCAN:,}+ rows:" + ("" if flagged else " none")]
    for s in flagged:
        lines.append(f"- {s['name']}: {', '.join(s['big_seq_scans'])}")
        lines += [f"    {n}" for n in (s["generic_plan"] or s["plan"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.explain", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--referrals", type=int, default=REFERRALS, help=f"past referrals (default {REFERRALS:,})"
    )
    parser.add_argument(
        "--case-managers", type=int, default=CASE_MANAGERS, help=f"case managers (default {CASE_MANAGERS:,})"
    )
    parser.add_argument(
        "--capture", type=int, default=CAPTURE, help=f"referrals captured (default {CAPTURE})"
    )
    parser.add_argument("--json", metavar="FILE", help="write the results (with every plan) as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (PostgreSQL data)")
    args = parser.parse_args(argv)
    configure_logging("console", "WARNING", service="bench")
    return run_on_platform(
        "bench.explain", args, lambda plat: _measure(args, plat), _table, progress=_progress
    )


if __name__ == "__main__":
    sys.exit(main())
