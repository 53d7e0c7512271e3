"""The `refnet` command, the one composition root: serve and migrate (production), operator tools, and
up, chaos, bench, demo from the development part (refnet[dev]), imported only when asked for."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

__all__ = ["main"]


def _cmd_up(args: argparse.Namespace) -> int:
    from refnet.devpart import require
    from shared.config import load_settings
    from shared.logging import configure_logging

    settings = load_settings()
    # The embedded servers stand in for the ones no URL names.
    require("up", postgres=not settings.database_url, nats=not settings.nats_url, urls=True, serve=True)
    from refnet.up import run_up

    # A person runs `refnet up` in a terminal: readable lines unless JSON was asked for.
    fmt = settings.log_format if "REFNET_LOG_FORMAT" in os.environ else "console"
    configure_logging(fmt, settings.log_level, service="up")
    data_dir = Path(args.data_dir or settings.data_dir)
    return run_up(data_dir, args.port, args.demo, settings)


def _cmd_migrate(args: argparse.Namespace) -> int:
    from shared.config import load_settings
    from shared.migrate import apply_migrations

    settings = load_settings()
    url = settings.migrate_database_url or settings.database_url
    if not url:
        raise SystemExit("refnet migrate: REFNET_MIGRATE_DATABASE_URL or REFNET_DATABASE_URL must be set")
    applied = asyncio.run(apply_migrations(url))
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _cmd_serve(args: argparse.Namespace) -> int:
    from shared.config import load_settings
    from shared.runtime import settle_heap

    settings = load_settings()
    if not settings.database_url or not settings.nats_url:
        raise SystemExit("refnet serve: REFNET_DATABASE_URL and REFNET_NATS_URL must be set")
    if args.service == "intake":
        import uvicorn

        from shared.logging import configure_logging

        configure_logging(settings.log_format, settings.log_level, service="intake")
        import services.intake.app  # noqa: F401  (imported now, so settle_heap freezes it)

        settle_heap()
        config = uvicorn.Config(
            "services.intake.app:configured_app",
            factory=True,
            host=settings.host,
            port=args.port or settings.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=10,
            server_header=False,
            # "auto" picks uvloop and httptools (dependencies): the pure-Python h11 parser and the
            # default event loop cost intake noticeably more CPU per request.
            loop="auto",
            http="auto",
        )
        # uvicorn drains in-flight requests on SIGTERM, then re-raises the signal, which would end the
        # process "killed by SIGTERM". A stop we asked for is a clean exit: 0 (also before uvicorn's
        # own handler is installed, when there is nothing to drain yet).
        signal.signal(signal.SIGTERM, _exit_cleanly)
        if settings.reuse_port:
            # Several intake processes on one port: each binds it with SO_REUSEPORT and the kernel
            # spreads new connections over them (uvicorn has no option for it; it takes the socket).
            sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((settings.host, config.port))
            uvicorn.Server(config).run(sockets=[sock])
            return 0
        uvicorn.Server(config).run()
        return 0
    from shared.bus import configure_consumers

    # REFNET_CONSUMER_ACK_WAIT_SECONDS / _MAX_DELIVER, and dead letters into this service's database.
    configure_consumers(settings)
    if args.service == "routing":
        from services.routing.service import serve as serve_routing

        settle_heap()
        # The consumer (with its periodic duties) and the manual-assignment command endpoint.
        _run_service(serve_routing(settings))
    else:
        from services.notify.service import serve

        settle_heap()
        # The consumer (with its reminder sweep) and the webhook/email dispatcher, in one process.
        _run_service(serve(settings))
    return 0


def _run_service(main: Coroutine[Any, Any, None]) -> None:
    """Run a worker on uvloop where it is installed (a third less CPU per message), else asyncio's loop."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


def _cmd_bench(args: argparse.Namespace) -> int:
    from refnet.devpart import require

    require("bench", postgres=True, nats=True, bench=True)
    from bench.__main__ import main as bench_main

    argv = ["--quick"] if args.quick else []
    if args.json:
        argv += ["--json", args.json]
    return int(bench_main(argv))


def _cmd_backup(args: argparse.Namespace) -> int:
    from refnet.backup import backup, database_target, epochs_in_use
    from services.intake.core.keyrotation import record_backup
    from shared.config import load_settings

    settings = load_settings()
    data_dir = _data_dir(args)
    keyring = Path(settings.pii_keyring_file or data_dir / "secrets" / "pii_keyring.json")
    with database_target(settings, data_dir) as dsn:
        # Before the dump: data keys only ever move to newer epochs, so the dump needs no older ones.
        epochs = asyncio.run(epochs_in_use(dsn))
        size = backup(dsn, Path(args.out))
    if keyring.exists():
        # The rotation destroys an epoch only once a backup under a later one is on record.
        record_backup(keyring, str(Path(args.out).absolute()), epochs)
    print(
        f"backup written to {args.out} ({size} bytes; PII keys of epoch(s) {', '.join(sorted(epochs)) or 'none'});"
        " back up the secrets (PII keys) separately"
    )
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from refnet.backup import database_target, restore
    from shared.config import load_settings

    with database_target(load_settings(), _data_dir(args), create=True) as dsn:
        result = restore(dsn, Path(args.file), force=args.force)
    migrated = f"; migrated {', '.join(result.migrations_applied)}" if result.migrations_applied else ""
    print(f"restored {args.file}: {result.referrals} referral(s){migrated}")
    return 0


def _cmd_healthcheck(args: argparse.Namespace) -> int:
    from refnet.healthcheck import check
    from shared.config import load_settings

    problems = asyncio.run(check(load_settings(), args.service))
    if problems:
        print(f"{args.service} unhealthy: {'; '.join(problems)}", file=sys.stderr)
        return 1
    print(f"{args.service} ok")
    return 0


def _cmd_chaos(args: argparse.Namespace) -> int:
    from refnet.devpart import require
    from shared.logging import configure_logging

    require("chaos", postgres=True, nats=True)  # it kills and restarts servers of its own
    from refnet_dev.chaos import run_cli

    configure_logging("console", "WARNING", service="chaos")  # stdout is for the report
    return asyncio.run(run_cli(args.rate, args.max_referrals, args.cluster, args.keep, args.json))


def _data_dir(args: argparse.Namespace) -> Path:
    from shared.config import load_settings

    return Path(getattr(args, "data_dir", None) or load_settings().data_dir)


def _cmd_keys(args: argparse.Namespace) -> int:
    from refnet.operator import admin_dsn, keyring_path, rotate_master_key
    from shared.config import load_settings

    settings = load_settings()
    data_dir = _data_dir(args)
    destroy = bool(args.destroy_previous or args.retire)
    result = asyncio.run(
        rotate_master_key(admin_dsn(settings, data_dir), keyring_path(settings, data_dir), destroy)
    )
    print(
        f"current master key {result.current}; re-wrapped {result.rewrapped} data key(s);"
        f" keys now {', '.join(result.keys)}"
        + (f"; destroyed {', '.join(result.destroyed)}" if result.destroyed else "")
    )
    if destroy and result.kept:
        print(
            f"kept {', '.join(result.kept)}: the newest recorded backup needs them; take a backup now"
            " (`refnet backup`) and rotate again to destroy them"
        )
    print("running services seal new referrals under the new key from their next use (no restart needed).")
    return 0


def _cmd_protocol(args: argparse.Namespace) -> int:
    import json

    from services.intake.protocol.definition import ProtocolError, load_protocol

    try:
        doc = load_protocol(args.file or "")
    except ProtocolError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    summary = {
        "version": doc.version,
        "protocols": [
            {
                "name": p.name,
                "ages": [p.min_age, p.max_age],
                "steps": [
                    {"code": s.code, "clock_from": s.clock_from, "clock_minutes": s.clock_minutes}
                    for s in p.steps
                ],
            }
            for p in doc.protocols
        ],
    }
    print(json.dumps(summary))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    import msgspec

    from refnet.operator import admin_dsn, audit_verify
    from shared import audit
    from shared.config import load_settings

    settings = load_settings()
    data_dir = _data_dir(args)
    settings = msgspec.structs.replace(settings, data_dir=str(data_dir))
    dsn = admin_dsn(settings, data_dir)  # first: no database is the more basic thing to say
    try:
        key = audit.load_key(settings)
    except audit.AuditKeyError as exc:
        print(f"refnet audit verify: {exc}", file=sys.stderr)
        return 2
    anchor_file = audit.anchor_path(settings)
    anchors = audit.read_anchors(anchor_file)
    result = asyncio.run(audit_verify(dsn, key, anchors))
    if result.ok:
        print(
            f"audit chain intact: {result.checked} sealed row(s) verified, {result.unsealed} awaiting sealing;"
            f" {result.anchors_checked} of {len(anchors)} anchor(s) in {anchor_file} matched"
        )
        return 0
    print(f"audit chain BROKEN at seq {result.broken_seq} (row id {result.broken_id}): {result.reason}")
    return 1


def _cmd_apikeys(args: argparse.Namespace) -> int:
    from refnet.operator import admin_dsn, apikey_command
    from shared.config import load_settings

    dsn = admin_dsn(load_settings(), _data_dir(args))
    print(
        asyncio.run(
            apikey_command(
                dsn,
                args.action,
                partner=args.partner,
                key_id=args.key_id,
                label=args.label,
                grace_hours=args.grace_hours,
                reason=args.reason,
            )
        )
    )
    return 0


def _service_dsn(data_dir: Path) -> str:
    """The service role's DSN (row-level security applies): the configured one, else the embedded
    server of `refnet up` logged into as refnet_app."""
    from refnet.operator import admin_dsn
    from shared.config import load_settings
    from shared.db import service_dsn

    settings = load_settings()
    return settings.database_url or service_dsn(admin_dsn(settings, data_dir))


def _cmd_report(args: argparse.Namespace) -> int:
    import msgspec

    from services.intake.evaluation.cohort import report_from_database
    from services.intake.evaluation.html import render_html

    report = asyncio.run(report_from_database(_service_dsn(_data_dir(args))))
    out = Path(args.out)
    out.write_text(render_html(report), encoding="utf-8")
    if args.json:
        Path(args.json).write_bytes(msgspec.json.format(msgspec.json.encode(report)))
    print(f"wrote {out} ({report.referrals} referrals, period {report.period_start} to {report.period_end})")
    return 0


def _cmd_demo_env(args: argparse.Namespace) -> int:
    from refnet.devpart import require

    require("demo")
    from refnet_dev.walkthrough import (
        WalkthroughError,
        demo_env,
        load_credentials,
        offer_env,
        shell_exports,
    )

    try:
        creds = load_credentials(_data_dir(args))
        values = offer_env(creds, args.offer) if args.offer else demo_env(creds)
    except WalkthroughError as exc:
        print(f"refnet demo env: {exc}", file=sys.stderr)
        return 1
    print(shell_exports(values))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    import json

    if args.demo_command == "env":
        return _cmd_demo_env(args)
    from refnet.devpart import require
    from refnet.operator import admin_dsn
    from shared.config import load_settings

    settings = load_settings()
    require("demo", postgres=not (settings.migrate_database_url or settings.database_url))
    from refnet_dev.simulate import simulate

    data_dir = _data_dir(args)
    path = data_dir / "demo-credentials.json"
    if not path.exists():
        raise SystemExit(
            f"refnet demo simulate: no {path}; start `refnet up --demo --data-dir {data_dir}` first"
        )
    creds = json.loads(path.read_text())
    base_url = args.base_url or creds["base_url"]
    summary = asyncio.run(
        simulate(
            base_url,
            creds,
            admin_dsn(settings, data_dir),
            south=args.south,
            valley=args.valley,
            seed=args.seed,
        )
    )
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(summary.statuses.items()))
    print(
        f"simulated {summary.referrals} referrals ({statuses}); {summary.interventions} interventions,"
        f" {summary.outcomes} outcome observations; {summary.api_calls} API calls in {summary.seconds}s"
    )
    return 0


def _cmd_roster(args: argparse.Namespace) -> int:
    import msgspec

    from refnet.operator import admin_dsn
    from services.intake.staff import roster
    from shared.config import load_settings
    from shared.regions import Catalogue

    settings = load_settings()
    dsn = admin_dsn(settings, _data_dir(args))
    if args.action == "list":
        views = asyncio.run(roster.run_list(dsn, args.region, args.status))
        print(msgspec.json.format(msgspec.json.encode(views)).decode())
        return 0
    if not args.file:
        raise SystemExit("refnet roster import: give the CSV file to import")
    text = Path(args.file).read_text(encoding="utf-8")
    codes = Catalogue.load(settings.region_catalogue or None).codes
    result, errors = asyncio.run(roster.run_import(dsn, text, codes, dry_run=args.dry_run))
    if errors:
        for e in errors:
            print(f"{args.file}: {e}", file=sys.stderr)
        print(f"refnet roster import: {len(errors)} problem(s); nothing was imported", file=sys.stderr)
        return 1
    if args.dry_run:
        print(f"{args.file}: valid; nothing written (--dry-run)")
        return 0
    if result.passwords and args.passwords_out:
        out = Path(args.passwords_out)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.writelines(f"{email},{password}\n" for email, password in result.passwords.items())
    print(f"created {len(result.created)}, updated {len(result.updated)} case manager(s)")
    if result.passwords:
        where = (
            f"written to {args.passwords_out}"
            if args.passwords_out
            else "not shown: use --passwords-out FILE"
        )
        print(f"new accounts' one-time passwords {where}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="refnet", description="Referral network for agencies serving exploited youth."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from refnet.accounts import add_account_commands

    add_account_commands(sub)

    up = sub.add_parser(
        "up", help="run the whole platform: embedded PostgreSQL + NATS + the three services (refnet[dev])"
    )
    up.add_argument("--data-dir", help="where data and local secrets live (default ./.refnet)")
    up.add_argument("--port", type=int, help="intake HTTP port (default 8000)")
    demo = up.add_mutually_exclusive_group()
    demo.add_argument("--demo", dest="demo", action="store_true", default=None, help="seed the demo network")
    demo.add_argument("--no-demo", dest="demo", action="store_false", help="do not seed the demo network")
    up.set_defaults(func=_cmd_up)

    mig = sub.add_parser("migrate", help="apply database migrations (REFNET_DATABASE_URL)")
    mig.set_defaults(func=_cmd_migrate)

    serve = sub.add_parser("serve", help="run one service in the foreground (for deployment)")
    serve.add_argument("service", choices=["intake", "routing", "notify"])
    serve.add_argument("--port", type=int, help="intake HTTP port (default REFNET_PORT or 8000)")
    serve.set_defaults(func=_cmd_serve)

    keys = sub.add_parser("keys", help="PII master keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    rotate = keys_sub.add_parser("rotate", help="add a new master key and re-wrap every referral's data key")
    rotate.add_argument("--data-dir", help="refnet up data dir (default ./.refnet)")
    rotate.add_argument(
        "--destroy-previous",
        action="store_true",
        help="destroy older master keys (once a backup under a later one exists, if any backup was recorded)",
    )
    rotate.add_argument("--retire", action="store_true", help=argparse.SUPPRESS)  # the old name
    keys.set_defaults(func=_cmd_keys)

    prot = sub.add_parser("protocol", help="the child-protection protocol file")
    prot_sub = prot.add_subparsers(dest="protocol_command", required=True, metavar="ACTION")
    pcheck = prot_sub.add_parser(
        "check", help="validate a protocol file (none: the shipped one); print its steps"
    )
    pcheck.add_argument("file", nargs="?", help="the file REFNET_PROTOCOL_FILE would name")
    prot.set_defaults(func=_cmd_protocol)

    aud = sub.add_parser("audit", help="the tamper-evident audit log")
    aud_sub = aud.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = aud_sub.add_parser("verify", help="check the hash chain; report the first broken link")
    verify.add_argument("--data-dir", help="refnet up data dir (default ./.refnet)")
    aud.set_defaults(func=_cmd_audit)

    ak = sub.add_parser("apikeys", help="partner API keys: list, create, revoke, rotate")
    ak.add_argument("action", choices=["list", "create", "revoke", "rotate"])
    ak.add_argument("key_id", nargs="?", help="the key id (revoke, rotate)")
    ak.add_argument("--partner", help="partner id (list, create)")
    ak.add_argument("--label", default="", help="a label for a new key")
    ak.add_argument(
        "--grace-hours", type=float, default=24.0, help="rotate: how long the old key keeps working"
    )
    ak.add_argument("--reason", default="", help="revoke: why")
    ak.add_argument("--data-dir", help="refnet up data dir (default ./.refnet)")
    ak.set_defaults(func=_cmd_apikeys)

    hc = sub.add_parser("healthcheck", help="exec probe: is this service ready (database, NATS, consumer)?")
    hc.add_argument("service", choices=["intake", "routing", "notify"])
    hc.set_defaults(func=_cmd_healthcheck)

    bk = sub.add_parser(
        "backup", help="pg_dump the refnet database (embedded or REFNET_DATABASE_URL) to a file"
    )
    bk.add_argument("--out", required=True, metavar="FILE", help="where to write the dump (custom format)")
    bk.add_argument("--data-dir", help="refnet up data dir (default ./.refnet)")
    bk.set_defaults(func=_cmd_backup)

    rs = sub.add_parser(
        "restore", help="restore a `refnet backup` dump, then migrate (stop the services first)"
    )
    rs.add_argument("file", help="a dump written by `refnet backup`")
    rs.add_argument("--data-dir", help="refnet up data dir (default ./.refnet); created if it was lost")
    rs.add_argument("--force", action="store_true", help="restore even while services are connected")
    rs.set_defaults(func=_cmd_restore)

    chaos = sub.add_parser(
        "chaos",
        help="fault injection under load on fresh embedded servers; prints the invariants (refnet[dev])",
    )
    chaos.add_argument("--rate", type=float, default=25.0, help="referrals/s from nine partners (default 25)")
    chaos.add_argument("--max-referrals", type=int, default=4000, help="stop the load after this many")
    chaos.add_argument("--cluster", action="store_true", help="a three-node NATS cluster (R3)")
    chaos.add_argument("--keep", action="store_true", help="keep the temp dir (service logs, data)")
    chaos.add_argument("--json", metavar="FILE", help="write the report as JSON to FILE")
    chaos.set_defaults(func=_cmd_chaos)

    ros = sub.add_parser("roster", help="case manager profiles: import a CSV roster, list")
    ros.add_argument("action", choices=["import", "list"])
    ros.add_argument(
        "file",
        nargs="?",
        help="import: CSV with columns email,name,regions,needs,capacity"
        " [,languages,status,away_until,specialisms]; lists separated by ';'",
    )
    ros.add_argument("--dry-run", action="store_true", help="import: validate only, write nothing")
    ros.add_argument("--passwords-out", metavar="FILE", help="import: write new accounts' passwords (0600)")
    ros.add_argument("--region", help="list: only case managers serving this region")
    ros.add_argument("--status", choices=["active", "away", "inactive"], help="list: only this status")
    ros.add_argument("--data-dir", help="refnet up data dir (default ./.refnet)")
    ros.set_defaults(func=_cmd_roster)

    rep = sub.add_parser("report", help="render the evaluation report (de-identified, suppressed) as HTML")
    rep.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    rep.add_argument("--json", metavar="FILE", help="also write the report's JSON to FILE")
    rep.add_argument("--data-dir", help="refnet up data dir (default ./.refnet)")
    rep.set_defaults(func=_cmd_report)

    dm = sub.add_parser("demo", help="demo data (refnet[dev])")
    dm_sub = dm.add_subparsers(dest="demo_command", required=True, metavar="ACTION")
    sim = dm_sub.add_parser(
        "simulate",
        help="play a synthetic two-year pilot through the running platform's API, then backdate it",
        description="Needs a running `refnet up --demo` (its demo-credentials.json) and operator access to"
        " its database (the embedded server, or REFNET_DATABASE_URL) to backdate the simulated history.",
    )
    sim.add_argument("--data-dir", help="refnet up data dir (default ./.refnet)")
    sim.add_argument("--base-url", help="intake URL (default: base_url in demo-credentials.json)")
    sim.add_argument("--seed", type=int, default=2026, help="random seed (default 2026)")
    sim.add_argument("--south", type=int, default=100, help="youth referred in South LA (default 100)")
    sim.add_argument("--valley", type=int, default=20, help="youth in the San Fernando Valley (default 20)")
    env = dm_sub.add_parser(
        "env",
        help='shell variables for the README walkthrough (eval "$(refnet demo env)")',
        description="Prints `export NAME=value` lines from demo-credentials.json and the running API: BASE,"
        " KEY (a demo partner's API key), consent dates relative to today, DATE_OF_BIRTH; with --offer, the"
        " case manager routing offered that referral to (CM_NAME, CM_EMAIL, CM_PASSWORD), a TOKEN for them"
        " and the ASSIGNMENT_ID.",
    )
    env.add_argument("--data-dir", help="refnet up data dir (default ./.refnet)")
    env.add_argument("--offer", metavar="REFERRAL_ID", help="wait for this referral's offer; who got it")
    dm.set_defaults(func=_cmd_demo)

    bench = sub.add_parser("bench", help="end-to-end benchmark against embedded servers (refnet[dev])")
    bench.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    bench.add_argument("--json", metavar="FILE", help="write results as JSON to FILE")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except SystemExit:
        raise
    except Exception as exc:
        print(f"refnet {args.command}: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
