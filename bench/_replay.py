"""The database ceiling's script: the SQL the running services issued for a few referrals, for pgbench.

Instead of a hand-kept copy of the services' statements (which drifts as the code changes), the benchmark
records what PostgreSQL actually executed: `log_statement = all` is switched on while a handful of
referrals go through intake, routing and notify, the server log is parsed back into per-connection
transactions (statements with their bound parameters), and those are written out as one pgbench script
in the order they started. One run of the script is therefore `referrals` referrals, statement for
statement, transaction for transaction, including the outbox relays' and consumers' bookkeeping and
whatever background polling happened in the window.

To make the script re-runnable:
- every UUID that did not exist before the capture (referral, event, assignment, decision ids) becomes
  a variable drawn fresh per run with `gen_random_uuid()`, so primary keys and processed-message
  claims never collide;
- the outbox relay's claim (`FOR UPDATE SKIP LOCKED`) keeps its shape: the relay deletes what it
  claims in the same statement (`DELETE ... WHERE id IN (SELECT ... SKIP LOCKED) RETURNING`), replayed
  as is; a separate claim and DELETE (an older relay) are tied together with `\\gset`;
- other bound values become constants passed with `-D`, and the statements keep their `$n` shape
  (`-M prepared`), as asyncpg sends them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import asyncpg

__all__ = [
    "LOG_SETTINGS",
    "Capture",
    "build_script",
    "parse_log",
    "snapshot_uuids",
    "start_capture",
    "stop_capture",
]

# Given to the embedded server at start; only log_statement is toggled at run time.
LOG_SETTINGS = {"log_line_prefix": "@@|%p|%a|", "log_parameter_max_length": "-1"}
BENCH_APP = "refnet-bench"

_PREFIX = re.compile(
    r"^@@\|(\d+)\|([^|]*)\|(LOG|DETAIL|ERROR|STATEMENT|WARNING|NOTICE|HINT|CONTEXT|FATAL):  "
)
_EXECUTE = re.compile(r"^execute [^:]+: ", re.DOTALL)
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_DIGEST = re.compile(r"^\\x[0-9a-f]{64}$")
_PARAM = re.compile(r"\$(\d+)")


@dataclass
class Statement:
    pid: int
    sql: str
    params: dict[int, str | None] = field(default_factory=dict)
    failed: bool = False


@dataclass
class Capture:
    """Units (transactions or single autocommit statements) in the order they began."""

    units: list[list[Statement]]
    statements: int


async def snapshot_uuids(dsn: str) -> set[str]:
    """Every UUID stored in any table now: what the capture's statements may refer to as constants."""
    conn = await asyncpg.connect(dsn, server_settings={"application_name": BENCH_APP})
    try:
        cols = await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND data_type = 'uuid'"
        )
        found: set[str] = set()
        for c in cols:
            table, column = c["table_name"], c["column_name"]
            rows = await conn.fetch(
                f'SELECT DISTINCT "{column}"::text AS v FROM "{table}" WHERE "{column}" IS NOT NULL'
            )
            found.update(r["v"] for r in rows)
        return found
    finally:
        await conn.close()


async def _set_logging(dsn: str, value: str) -> None:
    conn = await asyncpg.connect(dsn, server_settings={"application_name": BENCH_APP})
    try:
        await conn.execute(f"ALTER SYSTEM SET log_statement = '{value}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()


async def start_capture(dsn: str) -> None:
    """Switch statement logging on (note the server log's size first: the capture starts there)."""
    await _set_logging(dsn, "all")


async def stop_capture(dsn: str) -> None:
    await _set_logging(dsn, "none")


def _parse_params(text: str) -> dict[int, str | None]:
    """`$1 = 'a''b', $2 = NULL` → {1: "a'b", 2: None}."""
    out: dict[int, str | None] = {}
    i, n = 0, len(text)
    while i < n:
        m = re.compile(r"\$(\d+) = ").match(text, i)
        if m is None:
            break
        num, i = int(m.group(1)), m.end()
        if text.startswith("NULL", i):
            out[num] = None
            i += 4
        else:
            if text[i] != "'":
                raise ValueError(f"unexpected parameter text at {text[i : i + 40]!r}")
            i += 1
            buf: list[str] = []
            while True:
                j = text.index("'", i)
                buf.append(text[i:j])
                if text.startswith("''", j):
                    buf.append("'")
                    i = j + 2
                    continue
                i = j + 1
                break
            out[num] = "".join(buf)
        if text.startswith(", ", i):
            i += 2
    return out


def parse_log(text: str) -> Capture:
    """Group the logged statements into units per connection, dropping the benchmark's own ones."""
    entries: list[tuple[int, str, str, str]] = []  # pid, app, level, message
    for line in text.splitlines():
        m = _PREFIX.match(line)
        if m:
            entries.append((int(m.group(1)), m.group(2), m.group(3), line[m.end() :]))
        elif entries:
            pid, app, level, message = entries[-1]
            entries[-1] = (pid, app, level, message + "\n" + line)
    open_units: dict[int, list[Statement]] = {}
    last: dict[int, Statement] = {}
    units: list[list[Statement]] = []
    count = 0
    for pid, app, level, message in entries:
        if app == BENCH_APP or app.startswith("pgbench"):
            continue
        if level == "LOG":
            if message.startswith("statement: "):
                sql = message[len("statement: ") :]
            elif _EXECUTE.match(message):
                sql = _EXECUTE.sub("", message, count=1)
            else:
                continue
            stmt = Statement(pid, sql.strip())
            last[pid] = stmt
            count += 1
            word = stmt.sql.split(None, 1)[0].rstrip(";").upper() if stmt.sql else ""
            if word in ("BEGIN", "START"):
                unit: list[Statement] = [stmt]
                open_units[pid] = unit
                units.append(unit)
            elif pid in open_units:
                open_units[pid].append(stmt)
                if word in ("COMMIT", "ROLLBACK", "END"):
                    del open_units[pid]
            else:
                units.append([stmt])
        elif level == "DETAIL" and message.startswith("Parameters: ") and pid in last:
            last[pid].params = _parse_params(message[len("Parameters: ") :])
        elif level == "ERROR" and pid in last:
            last[pid].failed = True
    # A transaction still open when the capture stopped has no end to replay: leave it out whole.
    unfinished = {id(u) for u in open_units.values()}
    units = [u for u in units if id(u) not in unfinished]
    # A COMMIT or ROLLBACK whose BEGIN came before the capture began ends nothing here.
    units = [
        u
        for u in units
        if not (len(u) == 1 and u[0].sql.rstrip(";").upper() in ("COMMIT", "ROLLBACK", "END"))
    ]
    return Capture(units=units, statements=count)


def _strip_comments(sql: str) -> str:
    """Remove -- comments outside string literals (their `$n` or `:word` would confuse pgbench)."""
    out: list[str] = []
    i, n, quoted = 0, len(sql), False
    while i < n:
        c = sql[i]
        if c == "'":
            quoted = not quoted
        elif not quoted and sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
            continue
        out.append(c)
        i += 1
    return "\n".join(line.rstrip() for line in "".join(out).splitlines() if line.strip())


# Units that cannot run twice, left out of the script (and counted in `Script.skipped`): the audit
# sealer chains specific rows once (a second seal of a row is refused by a trigger). It is batched
# background work, one transaction per second or so for all the rows written meanwhile.
_UNREPLAYABLE = (re.compile(r"(?is)\bUPDATE\s+audit_log\s+(?:\w+\s+)?SET\s+seq\b"),)

# pgbench takes any ":" followed by letters, digits or "_" for a variable (whatever precedes it); "::" is a cast.
_BARE_VARIABLE = re.compile(r"(?<!:):(\w+)")


@dataclass
class Script:
    text: str
    defines: dict[str, str]
    fresh_uuids: int
    statements: int
    transactions: int
    skipped: int


def build_script(capture: Capture, existing: set[str]) -> Script:
    """One pgbench script replaying the capture; raise if a statement cannot be expressed."""
    consts: dict[str, str] = {}
    fresh: dict[str, str] = {}
    fresh_keys: dict[str, str] = {}
    body: list[str] = []
    statements = transactions = skipped = 0

    def const(value: str) -> str:
        if value == "":
            return "''"  # pgbench -D refuses an empty value
        if value not in consts:
            consts[value] = f"k{len(consts)}"
        return ":" + consts[value]

    for unit in capture.units:
        if any(p.search(stmt.sql) for stmt in unit for p in _UNREPLAYABLE):
            skipped += 1
            continue
        if len(unit) > 1:
            transactions += 1
        claimed = False
        for stmt in unit:
            if stmt.failed:
                continue
            sql = _strip_comments(stmt.sql).rstrip().rstrip(";")
            if not sql:
                continue
            for m in _BARE_VARIABLE.finditer(sql):
                raise ValueError(f"a statement has ':{m.group(1)}', which pgbench would read as a variable")
            if not stmt.params:
                # A simple query may hold several statements (asyncpg's pool reset); pgbench's prepared
                # mode takes one at a time.
                parts = [p.strip() for p in sql.split(";")] if "'" not in sql else [sql]
                for part in parts:
                    if part:
                        body.append(part + ";")
                        statements += 1
                continue
            is_insert = bool(re.search(r"(?i)\bINSERT\s+INTO\b", sql))
            is_claim = bool(re.search(r"\bFROM\s+outbox\b", sql)) and "SKIP LOCKED" in sql.upper()
            is_outbox_delete = bool(re.match(r"(?is)\s*DELETE\s+FROM\s+outbox\b", sql))

            def bind(
                m: re.Match[str],
                stmt: Statement = stmt,
                is_outbox_delete: bool = is_outbox_delete,
                claimed: bool = claimed,
                is_insert: bool = is_insert,
            ) -> str:
                n = int(m.group(1))
                if n not in stmt.params:
                    raise ValueError(f"no logged value for ${n} in: {stmt.sql[:120]}")
                value = stmt.params[n]
                if value is None:
                    return "NULL"
                if is_outbox_delete and claimed:
                    return ":oids"
                if _UUID.match(value) and value not in existing:
                    if value not in fresh:
                        fresh[value] = f"u{len(fresh)}"
                    return ":" + fresh[value]
                items = value[1:-1].split(",") if value.startswith("{") and value.endswith("}") else []
                if items and all(_UUID.match(i) for i in items) and not set(items) & existing:
                    # An array of new ids (the outbox's one-statement insert): each drawn fresh.
                    for i in items:
                        fresh.setdefault(i, f"u{len(fresh)}")
                    return "ARRAY[" + ", ".join(":" + fresh[i] for i in items) + "]"

                if _DIGEST.match(value) and (value in fresh_keys or is_insert):
                    # A 32-byte digest a referral insert introduces is the youth key: a constant would
                    # make every replayed referral the same youth, and routing's continuity lookup would
                    # read all of them. Drawn fresh per run, as a new youth.
                    if value not in fresh_keys:
                        fresh_keys[value] = f"y{len(fresh_keys)}"
                    return ":" + fresh_keys[value]
                return const(value)

            bound = _PARAM.sub(bind, sql)
            if is_claim and not is_outbox_delete:
                body.append(f"SELECT coalesce(array_agg(id), '{{}}') AS oids FROM (\n{bound}\n) s\n\\gset")
                claimed = True
            else:
                body.append(bound + ";")
            statements += 1
    head = []
    if fresh:
        names = list(fresh.values())
        # gen_random_uuid() for every new id in one round trip per run.
        for i in range(0, len(names), 100):
            cols = ", ".join(f"gen_random_uuid() AS {n}" for n in names[i : i + 100])
            head.append(f"SELECT {cols}\n\\gset")
    keys = list(fresh_keys.values())
    for i in range(0, len(keys), 100):
        cols = ", ".join(f"sha256(gen_random_uuid()::text::bytea) AS {n}" for n in keys[i : i + 100])
        head.append(f"SELECT {cols}\n\\gset")
    text = "\n".join(head + body) + "\n"
    return Script(
        text=text,
        defines={name: value for value, name in consts.items()},
        fresh_uuids=len(fresh),
        statements=statements,
        transactions=transactions,
        skipped=skipped,
    )
