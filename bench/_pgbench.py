"""The database ceiling: pgbench replaying the SQL one referral costs, transaction by transaction."""

from __future__ import annotations

import re
import subprocess
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

from services.intake.auth import hash_api_key
from services.routing.policy import Candidate, ReferralFacts, choose
from shared.crypto import KeyRing
from shared.db import load_sql
from shared.embedded import EmbeddedPostgres
from shared.events import ReferralAssigned, ReferralReceived, ReferralStatusChanged, encode_event, subject_for

__all__ = ["PgbenchResult", "build_scripts", "checkpoint", "run_pgbench"]

REGIONS = ("south_la", "san_fernando_valley")
NEEDS = ["housing", "mental_health"]
LANGUAGE = "es"

# Each service transaction starts with this (shared.db.transaction); the generated ids ride on it
# through \gset, so making them costs no extra round trip.
_IDENTITY = (
    "SELECT set_config('app.role', {role}, true) AS s_role,"
    " set_config('app.actor_id', {actor}, true) AS s_actor,"
    " set_config('app.partner_id', {partner}, true) AS s_partner,"
    " set_config('app.region', '', true) AS s_region"
)

# One script run is one referral: every statement the services issue for it, grouped into the
# same transactions, in pipeline order. pgbench's tps is therefore referrals/s.
_SCRIPT = """\
-- intake: API key lookup (autocommit, services/intake/auth.py)
{auth}
\\gset
-- intake: one transaction (shared/db.py identity + services/intake/sql/create_referral.sql)
BEGIN;
{identity_partner}, gen_random_uuid() AS rid, gen_random_uuid() AS e1
\\gset
{create_referral};
COMMIT;
-- outbox relay: claim the row, publish (NATS, not measured), delete (shared/outbox.py)
BEGIN;
SELECT coalesce(array_agg(id), '{{}}') AS oids FROM (
    SELECT id, event_id, subject, payload FROM outbox WHERE event_id = :e1
    ORDER BY id FOR UPDATE SKIP LOCKED) s
\\gset
DELETE FROM outbox WHERE id = any(:oids::bigint[]);
COMMIT;
-- routing: one transaction (services/routing/worker.py)
BEGIN;
{identity_system},
    gen_random_uuid() AS aid, gen_random_uuid() AS did, gen_random_uuid() AS e2, gen_random_uuid() AS e3
\\gset
INSERT INTO processed_messages (consumer, event_id) VALUES ('routing', :e1)
    ON CONFLICT DO NOTHING RETURNING 1;
SELECT * FROM referrals WHERE id = :rid FOR UPDATE;
SELECT case_manager_id FROM assignments WHERE referral_id = :rid AND state IN ('declined', 'expired');
{candidates};
{take_capacity};
INSERT INTO routing_decisions (id, referral_id, outcome, chosen_id, detail)
    VALUES (:did, :rid, 'assigned', '{cm}', :c_detail_{region});
INSERT INTO assignments (id, referral_id, case_manager_id, state, offered_at, respond_by, attempt)
    VALUES (:aid, :rid, '{cm}', 'offered', now(), now() + interval '4 hours', 1);
UPDATE referrals SET status = 'assigned', assigned_at = now(), updated_at = now() WHERE id = :rid;
INSERT INTO outbox (event_id, subject, payload) VALUES (:e2, :c_subject_assigned, :c_payload_assigned);
INSERT INTO outbox (event_id, subject, payload) VALUES (:e3, :c_subject_status, :c_payload_status);
COMMIT;
-- outbox relay again, for routing's two events
BEGIN;
SELECT coalesce(array_agg(id), '{{}}') AS oids FROM (
    SELECT id, event_id, subject, payload FROM outbox WHERE event_id IN (:e2, :e3)
    ORDER BY id FOR UPDATE SKIP LOCKED) s
\\gset
DELETE FROM outbox WHERE id = any(:oids::bigint[]);
COMMIT;
-- notify: one transaction (services/notify/worker.py)
BEGIN;
{identity_system};
INSERT INTO processed_messages (consumer, event_id) VALUES ('notify', :e2) ON CONFLICT DO NOTHING RETURNING 1;
INSERT INTO notifications (recipient_id, channel, kind, event_id, referral_id, assignment_id, data)
    VALUES ('{cm}', 'inapp', 'offer', :e2, :rid, :aid, :c_notification_{region}) ON CONFLICT DO NOTHING;
COMMIT;
"""

_AUTH = (
    "WITH k AS (SELECT id, partner_id FROM api_keys"
    " WHERE key_hash = '\\x{key_hash}'::bytea AND revoked_at IS NULL),"
    " t AS (UPDATE api_keys SET last_used_at = now() WHERE id = (SELECT id FROM k)"
    " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute'))"
    " SELECT id AS key_row, partner_id FROM k"
)

# create_referral.sql's parameters as pgbench variables or SQL. Constants come in through -D;
# values with colons (timestamps, JSON) must, since pgbench would read ":00" as a variable.
_CREATE_REFERRAL_ARGS = {
    1: ":rid",
    2: ":partner_id",
    3: "'{region}'",
    4: ":c_needs",
    5: ":c_language",
    6: ":c_urgency",
    7: ":c_age",
    8: ":c_intake",
    9: "now()",
    10: ":c_key_id",
    11: ":c_wrapped_key",
    12: ":c_nonce",
    13: ":c_ciphertext",
    14: ":c_method",
    15: ":c_scope",
    16: ":c_obtained_at",
    17: ":c_expires_at",
    18: ":e1",
    19: ":c_subject_received",
    20: ":c_payload_received",
    # No Idempotency-Key in the benchmark load, so the idempotency CTE inserts nothing.
    21: "NULL::text",
    22: "NULL::bytea",
    23: "NULL::bytea",
}


def _strip_comments(sql: str) -> str:
    # Comment text could hold a ':word' that pgbench would take for a variable.
    code = (line.split("--", 1)[0].rstrip() for line in sql.splitlines())
    return "\n".join(line for line in code if line.strip())


def _bind(sql: str, args: dict[int, str]) -> str:
    def repl(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if n not in args:
            raise ValueError(f"bench/_pgbench.py does not know parameter ${n} of a service statement")
        return args[n]

    return re.sub(r"\$(\d+)", repl, _strip_comments(sql)).rstrip().rstrip(";")


def _hex(data: bytes) -> str:
    return "\\x" + data.hex()


async def _chosen_case_managers(conn: asyncpg.Connection) -> tuple[dict[str, str], dict[str, str]]:
    """Per region, whom the real policy picks for the script's referral, and that decision's detail."""
    chosen: dict[str, str] = {}
    detail: dict[str, str] = {}
    for region in REGIONS:
        rows = await conn.fetch(load_sql("services.routing", "candidates"), region)
        candidates = [
            Candidate(
                id=str(r["staff_id"]),
                regions=tuple(r["regions"]),
                needs=tuple(r["needs"]),
                languages=tuple(r["languages"]),
                capacity=r["capacity"],
                active_count=r["active_count"],
                status=r["status"],
            )
            for r in rows
        ]
        facts = ReferralFacts(id="bench", region=region, needs=tuple(NEEDS), language=LANGUAGE)
        decision = choose(facts, candidates)
        if decision.chosen is None:
            raise ValueError(f"no case manager in {region} for the pgbench referral")
        chosen[region] = decision.chosen
        detail[region] = msgspec.json.encode(
            {"excluded": [], "candidates": msgspec.to_builtins(decision.scored)}
        ).decode()
    return chosen, detail


def _defines(detail: dict[str, str]) -> dict[str, str]:
    """Representative constant values (real sizes: sealed PII, encoded events) for -D."""
    now = datetime.now(UTC)
    rid, partner, cm = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    pii = msgspec.json.encode(
        {
            "youth": {
                "first_name": "Jordan",
                "last_name": "Garcia",
                "date_of_birth": "2009-04-01",
                "phone": "323-555-0199",
                "gender": "female",
            },
            "location": {"zip": "90011"},
            "notes": "Met at the drop-in centre; prefers text messages.",
        }
    )
    keyring = KeyRing({"k1": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="}, "k1")
    sealed = keyring.seal(pii, rid.encode())
    received = ReferralReceived(referral_id=rid, partner_id=partner, trace_id="0123456789abcdef")
    assigned = ReferralAssigned(
        referral_id=rid,
        assignment_id=str(uuid.uuid4()),
        case_manager_id=cm,
        region="south_la",
        respond_by=now + timedelta(hours=4),
        trace_id="0123456789abcdef",
    )
    status = ReferralStatusChanged(
        referral_id=rid,
        partner_id=partner,
        status="assigned",
        previous_status="received",
        trace_id="0123456789abcdef",
    )
    intake = {
        "referral_setting": "youth_shelter",
        "prior_services": "voluntary",
        "age_first_exploited": 14,
        "education_level": "some_high_school",
        "socioeconomic_status": "low",
        "prior_arrests": 2,
        "foster_care_history": True,
    }
    values: dict[str, str] = {
        "c_needs": "{" + ",".join(NEEDS) + "}",
        "c_language": LANGUAGE,
        "c_urgency": "routine",
        "c_age": "16",
        "c_intake": msgspec.json.encode(intake).decode(),
        "c_key_id": sealed.key_id,
        "c_wrapped_key": _hex(sealed.wrapped_key),
        "c_nonce": _hex(sealed.nonce),
        "c_ciphertext": _hex(sealed.ciphertext),
        "c_method": "written",
        "c_scope": "{case_management}",
        "c_obtained_at": (now - timedelta(days=1)).isoformat(),
        "c_expires_at": (now + timedelta(days=365)).isoformat(),
        "c_subject_received": subject_for(received),
        "c_payload_received": _hex(encode_event(received)),
        "c_subject_assigned": subject_for(assigned),
        "c_payload_assigned": _hex(encode_event(assigned)),
        "c_subject_status": subject_for(status),
        "c_payload_status": _hex(encode_event(status)),
    }
    for region in REGIONS:
        values[f"c_detail_{region}"] = detail[region]
        values[f"c_notification_{region}"] = msgspec.json.encode(
            {"respond_by": assigned.respond_by.isoformat(), "region": region, "urgency": "routine"}
        ).decode()
    return values


async def build_scripts(dsn: str, creds: dict[str, Any], workdir: Path) -> tuple[list[Path], dict[str, str]]:
    """One script per demo partner (its own API key; regions alternate); returns the files and -D values."""
    conn = await asyncpg.connect(dsn)
    try:
        chosen, detail = await _chosen_case_managers(conn)
    finally:
        await conn.close()
    create_referral = load_sql("services.intake", "create_referral")
    candidates = load_sql("services.routing", "candidates")
    take_capacity = load_sql("services.routing", "take_capacity")
    scripts: list[Path] = []
    args = _CREATE_REFERRAL_ARGS
    for i, partner in enumerate(creds["partners"]):
        region = REGIONS[i % len(REGIONS)]
        cm = chosen[region]
        text = _SCRIPT.format(
            auth=_AUTH.format(key_hash=hash_api_key(partner["api_key"]).hex()),
            identity_partner=_IDENTITY.format(role="'partner'", actor=":partner_id", partner=":partner_id"),
            identity_system=_IDENTITY.format(role="'system'", actor="''", partner="''"),
            create_referral=_bind(create_referral, {k: v.format(region=region) for k, v in args.items()}),
            candidates=_bind(candidates, {1: f"'{region}'"}),
            take_capacity=_bind(take_capacity, {1: f"'{cm}'"}),
            cm=cm,
            region=region,
        )
        path = workdir / f"pgbench_referral_{i}.sql"
        path.write_text(text)
        scripts.append(path)
    return scripts, _defines(detail)


async def checkpoint(dsn: str) -> None:
    """Flush the load's dirty pages now, so that checkpoint does not land inside pgbench's window."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


@dataclass
class PgbenchResult:
    tps: float
    latency_ms: float | None
    transactions: int
    failed: int
    command: list[str]


def run_pgbench(
    pg: EmbeddedPostgres,
    scripts: list[Path],
    defines: dict[str, str],
    *,
    clients: int,
    threads: int,
    seconds: int,
) -> PgbenchResult:
    """Run the scripts (picked at random per run) with the prepared protocol, as asyncpg uses."""
    argv = _argv(pg, scripts, defines, clients=clients, threads=threads, seconds=seconds)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120, check=False)
    out = proc.stdout
    tps = re.search(r"^tps = ([0-9.]+)", out, re.MULTILINE)
    if proc.returncode != 0 or tps is None:
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"pgbench failed (exit {proc.returncode}): {reason}")
    latency = re.search(r"^latency average = ([0-9.]+) ms", out, re.MULTILINE)
    processed = re.search(r"^number of transactions actually processed: (\d+)", out, re.MULTILINE)
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.MULTILINE)
    shown = [a if not a.startswith("c_") else a.split("=", 1)[0] + "=…" for a in argv]
    return PgbenchResult(
        tps=float(tps.group(1)),
        latency_ms=float(latency.group(1)) if latency else None,
        transactions=int(processed.group(1)) if processed else 0,
        failed=int(failed.group(1)) if failed else 0,
        command=shown,
    )


def _argv(
    pg: EmbeddedPostgres,
    scripts: list[Path],
    defines: dict[str, str],
    *,
    clients: int,
    threads: int,
    seconds: int,
) -> list[str]:
    argv = [
        str(pg.bin_dir / "pgbench"),
        "-n",
        "-M",
        "prepared",
        "-h",
        str(pg.socket_dir),
        "-p",
        str(pg.port),
        "-U",
        pg.user,
        "-c",
        str(clients),
        "-j",
        str(threads),
        "-T",
        str(seconds),
    ]
    for path in scripts:
        argv += ["-f", str(path)]
    for name, value in defines.items():
        argv += ["-D", f"{name}={value}"]
    argv.append("postgres")
    return argv
