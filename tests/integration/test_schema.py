"""The migrated schema, described from the catalogs, must match the checked-in snapshot.

The snapshot makes every schema change visible in review. After changing or adding a migration,
regenerate it with::

    REFNET_UPDATE_SCHEMA=1 .venv/bin/pytest tests/integration/test_schema.py

and commit ``tests/integration/expected_schema.txt`` with the migration.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import asyncpg

from shared.db import load_sql

EXPECTED = Path(__file__).with_name("expected_schema.txt")
UPDATE_VAR = "REFNET_UPDATE_SCHEMA"
SCHEMAS = ("public",)

_TABLES = """
SELECT c.oid, n.nspname, c.relname, c.relkind::text AS relkind, c.relrowsecurity, c.relforcerowsecurity,
       c.relpersistence::text AS relpersistence, coalesce(pg_get_partkeydef(c.oid), '') AS partkey
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p', 'f')
ORDER BY n.nspname, c.relname
"""

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
       coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS default_expr,
       a.attidentity::text AS attidentity, a.attgenerated::text AS attgenerated,
       coalesce(co.collname, '') AS collation
FROM pg_attribute a
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 0
     AND co.collname <> 'default'
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_CONSTRAINTS = """
SELECT conname, contype::text AS contype, pg_get_constraintdef(oid, true) AS def, condeferrable, condeferred
FROM pg_constraint
WHERE conrelid = $1
ORDER BY contype::text, conname
"""

_INDEXES = """
SELECT i.relname AS name, pg_get_indexdef(x.indexrelid) AS def
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = $1
ORDER BY i.relname
"""

_TRIGGERS = """
SELECT tgname, pg_get_triggerdef(oid, true) AS def, tgenabled::text AS tgenabled
FROM pg_trigger
WHERE tgrelid = $1 AND NOT tgisinternal
ORDER BY tgname
"""

_POLICIES = """
SELECT policyname, permissive, roles::text[] AS roles, cmd,
       coalesce(qual, '') AS qual, coalesce(with_check, '') AS with_check
FROM pg_policies
WHERE schemaname = $1 AND tablename = $2
ORDER BY policyname
"""

_GRANTS = """
SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END AS grantee,
       string_agg(a.privilege_type, ',' ORDER BY a.privilege_type) AS privileges
FROM pg_class c, aclexplode(c.relacl) a
WHERE c.oid = $1 AND a.grantee <> c.relowner
GROUP BY 1
ORDER BY 1
"""

_VIEWS = """
SELECT n.nspname, c.relname, c.relkind::text AS relkind, pg_get_viewdef(c.oid, true) AS def
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('v', 'm')
ORDER BY n.nspname, c.relname
"""

_SEQUENCES = """
SELECT n.nspname, c.relname, format_type(s.seqtypid, NULL) AS type, s.seqincrement, s.seqmin, s.seqmax,
       s.seqcycle, EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'i') AS identity
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_sequence s ON s.seqrelid = c.oid
WHERE n.nspname = ANY($1::text[]) AND c.relkind = 'S'
ORDER BY n.nspname, c.relname
"""

_FUNCTIONS = """
SELECT n.nspname, p.proname, pg_get_function_identity_arguments(p.oid) AS args,
       CASE p.prokind WHEN 'p' THEN 'procedure' ELSE pg_get_function_result(p.oid) END AS result,
       l.lanname, p.provolatile::text AS provolatile, p.prosecdef, md5(p.prosrc) AS body_md5
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
WHERE n.nspname = ANY($1::text[])
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
ORDER BY n.nspname, p.proname, args
"""

_TYPES = """
SELECT n.nspname, t.typname, t.typtype::text AS typtype,
       coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                 FROM pg_enum e WHERE e.enumtypid = t.oid), '') AS labels,
       coalesce(format_type(t.typbasetype, t.typtypmod), '') AS base
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE n.nspname = ANY($1::text[]) AND t.typtype IN ('e', 'd')
ORDER BY n.nspname, t.typname
"""

_EXTENSIONS = "SELECT extname FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY extname"

_SCHEMA_NAMES = """
SELECT nspname FROM pg_namespace
WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
ORDER BY nspname
"""

_MIGRATIONS = "SELECT version, name FROM schema_migrations ORDER BY version"

_KINDS = {"r": "TABLE", "p": "PARTITIONED TABLE", "f": "FOREIGN TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW"}
_CONTYPES = {
    "p": "PRIMARY KEY",
    "u": "UNIQUE",
    "f": "FOREIGN KEY",
    "c": "CHECK",
    "x": "EXCLUDE",
    "t": "TRIGGER",
    "n": "NOT NULL",
}


async def describe_schema(conn: asyncpg.Connection) -> str:
    """A deterministic, human-readable description of everything the migrations create."""
    out: list[str] = []
    schemas = list(SCHEMAS)
    out.append("# Generated by tests/integration/test_schema.py; regenerate with REFNET_UPDATE_SCHEMA=1.")
    out.append("")
    out.append("SCHEMAS " + ", ".join(r["nspname"] for r in await conn.fetch(_SCHEMA_NAMES)))
    out.append("EXTENSIONS " + (", ".join(r["extname"] for r in await conn.fetch(_EXTENSIONS)) or "-"))
    out.append("")

    for t in await conn.fetch(_TABLES, schemas):
        flags = []
        if t["relrowsecurity"]:
            flags.append("ROW LEVEL SECURITY")
        if t["relforcerowsecurity"]:
            flags.append("FORCE ROW LEVEL SECURITY")
        if t["relpersistence"] == "u":
            flags.append("UNLOGGED")
        if t["partkey"]:
            flags.append(f"PARTITION BY {t['partkey']}")
        out.append(
            f"{_KINDS[t['relkind']]} {t['nspname']}.{t['relname']}" + "".join(f" [{f}]" for f in flags)
        )
        for c in await conn.fetch(_COLUMNS, t["oid"]):
            line = f"  COLUMN {c['attname']} {c['type']}"
            if c["collation"]:
                line += f' COLLATE "{c["collation"]}"'
            line += " NOT NULL" if c["attnotnull"] else " NULL"
            if c["attidentity"]:
                line += (
                    " GENERATED " + ("ALWAYS" if c["attidentity"] == "a" else "BY DEFAULT") + " AS IDENTITY"
                )
            if c["attgenerated"]:
                line += f" GENERATED ALWAYS AS ({c['default_expr']}) STORED"
            elif c["default_expr"]:
                line += f" DEFAULT {c['default_expr']}"
            out.append(line)
        for k in await conn.fetch(_CONSTRAINTS, t["oid"]):
            if k["contype"] == "n":
                continue  # PostgreSQL 18 catalogs NOT NULL as constraints; the columns already say so.
            line = f"  CONSTRAINT {k['conname']} {k['def']}"
            if k["condeferrable"]:
                line += " DEFERRABLE" + (" INITIALLY DEFERRED" if k["condeferred"] else "")
            out.append(line)
        for i in await conn.fetch(_INDEXES, t["oid"]):
            out.append(f"  INDEX {i['name']}: {i['def']}")
        for g in await conn.fetch(_TRIGGERS, t["oid"]):
            disabled = "" if g["tgenabled"] == "O" else f" [enabled={g['tgenabled']}]"
            out.append(f"  TRIGGER {g['tgname']}: {g['def']}{disabled}")
        for p in await conn.fetch(_POLICIES, t["nspname"], t["relname"]):
            roles = ",".join(sorted(p["roles"]))
            out.append(
                f"  POLICY {p['policyname']} {p['permissive']} FOR {p['cmd']} TO {roles}"
                f" USING ({p['qual']}) WITH CHECK ({p['with_check']})"
            )
        for g in await conn.fetch(_GRANTS, t["oid"]):
            out.append(f"  GRANT {g['privileges']} TO {g['grantee']}")
        out.append("")

    for v in await conn.fetch(_VIEWS, schemas):
        out.append(f"{_KINDS[v['relkind']]} {v['nspname']}.{v['relname']}")
        out.extend("  " + line.rstrip() for line in v["def"].strip().splitlines())
        out.append("")

    for s in await conn.fetch(_SEQUENCES, schemas):
        kind = "IDENTITY SEQUENCE" if s["identity"] else "SEQUENCE"
        out.append(
            f"{kind} {s['nspname']}.{s['relname']} {s['type']} INCREMENT {s['seqincrement']}"
            f" MIN {s['seqmin']} MAX {s['seqmax']}" + (" CYCLE" if s["seqcycle"] else "")
        )
    for ty in await conn.fetch(_TYPES, schemas):
        if ty["typtype"] == "e":
            out.append(f"ENUM {ty['nspname']}.{ty['typname']} ({ty['labels']})")
        else:
            out.append(f"DOMAIN {ty['nspname']}.{ty['typname']} {ty['base']}")
    for f in await conn.fetch(_FUNCTIONS, schemas):
        attrs = f"LANGUAGE {f['lanname']} VOLATILITY {f['provolatile']}"
        if f["prosecdef"]:
            attrs += " SECURITY DEFINER"
        out.append(
            f"FUNCTION {f['nspname']}.{f['proname']}({f['args']}) RETURNS {f['result']} {attrs}"
            f" BODY md5:{f['body_md5']}"
        )
    out.append("")
    for m in await conn.fetch(_MIGRATIONS):
        # Names only: the runner itself refuses an applied migration whose checksum changed.
        out.append(f"MIGRATION {m['version']:04d}_{m['name']}")
    return "\n".join(out).rstrip("\n") + "\n"


async def test_schema_matches_snapshot(db: asyncpg.Connection) -> None:
    actual = await describe_schema(db)
    if os.environ.get(UPDATE_VAR):
        EXPECTED.write_text(actual)
        print(f"rewrote {EXPECTED}")
        return
    expected = EXPECTED.read_text() if EXPECTED.exists() else ""
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                actual.splitlines(keepends=True),
                fromfile=f"{EXPECTED.name} (checked in)",
                tofile="migrated database",
            )
        )
        raise AssertionError(
            "The migrated schema differs from tests/integration/expected_schema.txt "
            "(diff below: '-' is the snapshot, '+' the database).\n"
            "If the change is intended, regenerate the snapshot and commit it:\n"
            f"    {UPDATE_VAR}=1 .venv/bin/pytest tests/integration/test_schema.py\n\n" + diff
        )


async def test_description_is_deterministic(db: asyncpg.Connection) -> None:
    assert await describe_schema(db) == await describe_schema(db)


async def test_schema_has_the_architectures_tables(db: asyncpg.Connection) -> None:
    """A floor independent of the snapshot: the tables the architecture relies on exist."""
    names = {
        r["relname"]
        for r in await db.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')"
        )
    }
    assert names >= {
        "partners",
        "api_keys",
        "staff",
        "case_managers",
        "referrals",
        "referral_pii",
        "referral_keys",
        "consents",
        "idempotency_keys",
        "assignments",
        "routing_decisions",
        "notifications",
        "processed_messages",
        "outbox",
        "schema_migrations",
    }


async def test_pii_table_holds_only_ciphertext(db: asyncpg.Connection) -> None:
    """Identifying details never get plaintext columns: referral_pii is bytes plus ids."""
    cols = {
        r["column_name"]: r["data_type"]
        for r in await db.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public' AND table_name = 'referral_pii'"
        )
    }
    assert cols, "referral_pii is missing"
    for name, data_type in cols.items():
        assert data_type in {"bytea", "uuid", "text", "timestamp with time zone", "integer", "smallint"}, name
        if data_type == "text":
            assert name.endswith(("_id", "key_id")), f"referral_pii.{name} is text"


async def test_policies_read_the_identity_once_per_statement(db: asyncpg.Connection) -> None:
    """Every policy calls the identity functions as ``(SELECT refnet_role())`` (0012).

    A bare call is inlined into current_setting() and re-evaluated for every row the policy looks at,
    which made a full count of referrals twice as slow; a policy added later must keep the wrapper.
    """
    bare = [
        f"{r['tablename']}.{r['policyname']}"
        for r in await db.fetch(
            "SELECT tablename, policyname, coalesce(qual, '') || ' ' || coalesce(with_check, '') AS expr"
            " FROM pg_policies WHERE schemaname = 'public' ORDER BY 1, 2"
        )
        if re.search(r"(?<!SELECT )refnet_(role|actor|partner|region|break_glass)\(\)", r["expr"])
    ]
    assert bare == [], f"policies calling an identity function per row: {bare}"


async def test_per_referral_functions_plan_once_per_session(db: asyncpg.Connection) -> None:
    # Migrations 0098/0099: PL/pgSQL re-plans a query with (array) parameters on every call unless told
    # to keep its generic plan; the youth lookup cost 0.3-0.5 ms of planning per referral that way.
    rows = await db.fetch(
        "SELECT proname, proconfig FROM pg_proc WHERE proname = ANY ($1::text[])",
        ["refnet_youth_candidates_many", "refnet_authenticate_api_key", "refnet_has_webhook_subscriber"],
    )
    assert len(rows) == 3
    for r in rows:
        assert "plan_cache_mode=force_generic_plan" in r["proconfig"], r["proname"]


async def test_the_api_key_lookup_keeps_its_generic_plan(db: asyncpg.Connection) -> None:
    # Migration 0101: with the function's default estimates a custom plan always looked cheaper, so the
    # statement every API request runs was planned again on every call.
    lookup = await db.prepare(load_sql("services.intake.core", "authenticate_api_keys"))
    for i in range(10):
        assert await lookup.fetch([bytes([i]) * 32]) == []
    plans = await db.fetchrow(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements WHERE name = $1",
        lookup.get_name(),
    )
    assert plans is not None and plans["custom_plans"] <= 5 and plans["generic_plans"] >= 5, dict(plans or {})
