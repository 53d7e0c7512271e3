"""Accounts from the command line: `refnet staff create|deactivate|reactivate|reset-password`, `refnet partners
create|deactivate|reactivate`; one JSON object on stdout; the first admin of a --no-demo install."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncpg

    from shared.db import Identity

__all__ = ["add_account_commands", "partners_command", "staff_command"]

T = TypeVar("T")
# The roles `staff create` offers (services.intake.staff.accounts.ROLES; not imported: `refnet --help`
# stays fast).
_ROLES = ("admin", "supervisor", "case_manager", "evaluator", "intake_staff", "partner_user")


def _operator() -> Identity:
    """The command line acts as the system (row-level security), named "cli" in the audit log."""
    from shared.db import Identity

    return Identity(role="system", actor_id="cli")


class CommandError(SystemExit):
    """A refusal the terminal shows on stderr (exit 1), as one line."""


async def _in_transaction(dsn: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            # No actor id in the session (row-level security reads it as a uuid); the audit rows name "cli".
            await conn.execute("SELECT set_config('app.role', 'system', true)")
            return await work(conn)
    finally:
        await conn.close()


def _run(data_dir: Path, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Against REFNET_DATABASE_URL, else the embedded server of `refnet up` on ``data_dir`` (started for
    the command and stopped after it when `refnet up` is not running)."""
    from refnet.backup import BackupError, database_target
    from services.intake.core.problems import Problem
    from services.intake.staff import accounts
    from shared.config import load_settings

    try:
        with database_target(load_settings(), data_dir) as dsn:
            return asyncio.run(_in_transaction(dsn, work))
    except BackupError as exc:
        raise CommandError(f"refnet: {exc}") from None
    except accounts.AccountError as exc:
        raise CommandError(f"refnet: {exc}") from None
    except Problem as exc:
        raise CommandError(f"refnet: {exc.detail}") from None


def _json(value: Any) -> str:
    import msgspec

    return msgspec.json.encode(value).decode()


async def _staff_id(conn: asyncpg.Connection, email: str) -> str:
    from services.intake.staff import accounts

    sid = await accounts.find_by_email(conn, email)
    if sid is None:
        raise CommandError(f"refnet: no account with the email {email}")
    return sid


def staff_command(
    action: str,
    data_dir: Path,
    *,
    email: str,
    role: str = "",
    name: str = "",
    regions: list[str] | None = None,
    partner: str | None = None,
) -> str:
    """Run one staff action and return its JSON line (passwords are one-time: changed at first sign-in)."""
    from services.intake.staff import accounts
    from shared.config import load_settings
    from shared.credentials import hash_password, new_password
    from shared.regions import Catalogue

    operator = _operator()
    if action in ("create", "reset-password"):
        password = new_password()
        # Hashed before connecting: argon2 is deliberately slow.
        password_hash = hash_password(password)
    if action == "create":
        codes = Catalogue.load(load_settings().region_catalogue or None).codes

        async def create(conn: asyncpg.Connection) -> dict[str, Any]:
            made = await accounts.create_account(
                conn,
                operator,
                email=email,
                name=name,
                role=role,
                regions=regions or [],
                partner_id=partner,
                password_hash=password_hash,
                region_codes=codes,
            )
            return {"id": made.id, "email": made.email, "role": made.role, "password": password}

        return _json(_run(data_dir, create))
    if action == "reset-password":

        async def reset(conn: asyncpg.Connection) -> dict[str, Any]:
            sid = await _staff_id(conn, email)
            found = await accounts.reset_password(conn, operator, sid, password_hash)
            return {"email": found, "password": password}

        return _json(_run(data_dir, reset))
    active = action == "reactivate"

    async def toggle(conn: asyncpg.Connection) -> dict[str, Any]:
        sid = await _staff_id(conn, email)
        changed = await accounts.set_active(conn, operator, sid, active)
        return {"id": changed.id, "email": changed.email, "role": changed.role, "active": changed.active}

    return _json(_run(data_dir, toggle))


def partners_command(action: str, data_dir: Path, *, name: str = "", partner: str = "") -> str:
    """Create a partner (with its first API key, shown once), or deactivate/reactivate one by id."""
    from services.intake.partners import service as partners

    operator = _operator()
    if action == "create":

        async def create(conn: asyncpg.Connection) -> dict[str, Any]:
            made = await partners.create_partner(conn, operator, name)
            return {"id": made.id, "name": made.name, "api_key": made.api_key}

        return _json(_run(data_dir, create))

    async def toggle(conn: asyncpg.Connection) -> dict[str, Any]:
        view = await partners.set_partner_active(conn, operator, partner, action == "reactivate")
        return {"id": view.id, "name": view.name, "active": view.active}

    return _json(_run(data_dir, toggle))


def _data_dir(args: argparse.Namespace) -> Path:
    from shared.config import load_settings
    from shared.logging import configure_logging

    # stdout is the one JSON object; the embedded server's start and stop go to stderr.
    configure_logging("console", "WARNING", service="cli")

    return Path(args.data_dir or load_settings().data_dir)


def _cmd_staff(args: argparse.Namespace) -> int:
    regions = [r.strip() for r in (args.regions or "").split(",") if r.strip()]
    print(
        staff_command(
            args.action,
            _data_dir(args),
            email=args.email,
            role=args.role or "",
            name=args.name or "",
            regions=regions,
            partner=args.partner,
        )
    )
    return 0


def _cmd_partners(args: argparse.Namespace) -> int:
    if args.action == "create" and not args.name:
        raise CommandError("refnet partners create: --name is required")
    if args.action != "create" and not args.id:
        raise CommandError(f"refnet partners {args.action}: --id is required")
    data_dir = _data_dir(args)
    print(partners_command(args.action, data_dir, name=args.name or "", partner=args.id or ""))
    return 0


def add_account_commands(sub: Any) -> None:
    """`refnet staff ...` and `refnet partners ...` on the top-level parser."""
    staff = sub.add_parser("staff", help="staff accounts: create, deactivate, reactivate, reset-password")
    staff.add_argument("action", choices=["create", "deactivate", "reactivate", "reset-password"])
    staff.add_argument("--email", required=True)
    staff.add_argument("--role", choices=list(_ROLES), help="create: the account's role")
    staff.add_argument("--name", help="create: the person's name")
    staff.add_argument("--regions", help="create: region codes, comma-separated (supervisors, case managers)")
    staff.add_argument("--partner", help="create: the partner a partner_user acts for (its id)")
    staff.add_argument("--data-dir", help="refnet up data dir (default ./.refnet)")
    staff.set_defaults(func=_cmd_staff)
    part = sub.add_parser("partners", help="partners: create (with a first API key), deactivate, reactivate")
    part.add_argument("action", choices=["create", "deactivate", "reactivate"])
    part.add_argument("--name", help="create: the partner's name")
    part.add_argument("--id", help="deactivate, reactivate: the partner's id")
    part.add_argument("--data-dir", help="refnet up data dir (default ./.refnet)")
    part.set_defaults(func=_cmd_partners)
