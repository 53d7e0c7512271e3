"""Accounts of every role (admin API, web pages and command line): create, deactivate, reactivate, reset.

Passwords made here are one-time: shown once, and the person must choose their own at first sign-in.
Deactivation bumps the account's token version, so every token and web session of the person stops at
once (authentication re-reads the account on each request); a case manager also leaves routing. All
of it runs in the caller's transaction (row-level security: admins, or the system for the CLI) and is
audited with ids and the role only.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from shared import audit
from shared.codes import NEED_CODES
from shared.db import Identity, load_sql

__all__ = [
    "ROLES",
    "Account",
    "AccountError",
    "check_new_account",
    "create_account",
    "find_by_email",
    "list_accounts",
    "reset_password",
    "set_active",
]

_PKG = "services.intake.staff"
_INSERT_ACCOUNT = load_sql(_PKG, "insert_account")
_INSERT_PROFILE = load_sql(_PKG, "insert_profile")
_ACCOUNTS = load_sql(_PKG, "accounts")
_ACCOUNT = load_sql(_PKG, "account")
_ACCOUNT_BY_EMAIL = load_sql(_PKG, "account_by_email")
_SET_ACTIVE = load_sql(_PKG, "set_account_active")
_SYNC_CASE_MANAGER = load_sql(_PKG, "sync_case_manager_status")
_RESET_PASSWORD = load_sql(_PKG, "reset_password")
_PARTNER_ACTIVE = load_sql(_PKG, "partner_active")

ROLES = ("admin", "supervisor", "case_manager", "evaluator", "intake_staff", "partner_user")
# Roles whose home region decides what they see (a supervisor's queue, a case manager's routing).
_REGIONAL = ("supervisor", "case_manager")


class Account(msgspec.Struct, kw_only=True):
    id: str
    email: str
    name: str
    role: str
    regions: list[str]
    partner_id: str | None
    active: bool
    password_change_required: bool
    created_at: datetime


class AccountError(Exception):
    """A refused account change: its status and every offending field with why."""

    def __init__(self, status: int, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(e["message"] for e in errors))
        self.status = status
        self.errors = errors


def check_new_account(
    role: str, regions: Collection[str], partner_id: str | None, region_codes: Collection[str]
) -> list[dict[str, str]]:
    """Every problem with a new account's role, regions and partner (pure)."""
    errors: list[dict[str, str]] = []
    if role not in ROLES:
        errors.append({"field": "role", "message": f"must be one of {', '.join(ROLES)}"})
    unknown = [r for r in regions if r not in region_codes]
    if unknown:
        errors.append({"field": "regions", "message": f"unknown region(s): {', '.join(unknown)}"})
    elif role in _REGIONAL and not regions:
        errors.append({"field": "regions", "message": f"a {role} needs at least one region"})
    if role == "partner_user":
        if not partner_id:
            errors.append({"field": "partner_id", "message": "a partner user needs the partner they act for"})
        else:
            try:
                uuid.UUID(partner_id)
            except ValueError:
                errors.append({"field": "partner_id", "message": "must be a partner's id"})
    elif partner_id:
        errors.append({"field": "partner_id", "message": "only a partner user belongs to a partner"})
    return errors


def _account(r: asyncpg.Record) -> Account:
    return Account(
        id=str(r["id"]),
        email=r["email"],
        name=r["display_name"],
        role=r["role"],
        regions=list(r["regions"]),
        partner_id=str(r["partner_id"]) if r["partner_id"] is not None else None,
        active=r["active"],
        password_change_required=r["password_change_required"],
        created_at=r["created_at"],
    )


async def create_account(
    conn: asyncpg.Connection,
    identity: Identity,
    *,
    email: str,
    name: str,
    role: str,
    regions: list[str],
    partner_id: str | None,
    password_hash: str,
    region_codes: Collection[str],
) -> Account:
    """A new account with a one-time password (hashed by the caller, outside the transaction). A case
    manager also gets a routing profile with no capacity: the roster gives them cases when ready."""
    errors = check_new_account(role, regions, partner_id, region_codes)
    if not errors and role == "partner_user":
        active = await conn.fetchval(_PARTNER_ACTIVE, partner_id)
        if active is None:
            errors.append({"field": "partner_id", "message": "no such partner"})
        elif not active:
            errors.append({"field": "partner_id", "message": "that partner is deactivated"})
    if errors:
        raise AccountError(422, errors)
    if await conn.fetchval(_ACCOUNT_BY_EMAIL, email.strip()) is not None:
        raise AccountError(409, [{"field": "email", "message": f"{email.strip()} is already in use"}])
    sid = str(uuid.uuid4())
    region = regions[0] if regions and role != "partner_user" else None
    try:
        await conn.execute(_INSERT_ACCOUNT, sid, email.strip(), name, role, region, partner_id, password_hash)
    except asyncpg.UniqueViolationError:
        raise AccountError(
            409, [{"field": "email", "message": f"{email.strip()} is already in use"}]
        ) from None
    if role == "case_manager":
        await conn.execute(_INSERT_PROFILE, sid, regions, list(NEED_CODES), ["en"], 0, "active", None, [])
    detail: dict[str, Any] = {"role": role}
    if partner_id:
        detail["partner_id"] = partner_id
    await audit.record(conn, identity, "staff.create", "staff", sid, detail)
    found = await get_account(conn, sid)
    if found is None:  # pragma: no cover - just inserted in this transaction
        raise AccountError(404, [{"field": "id", "message": "no such account"}])
    return found


async def get_account(conn: asyncpg.Connection, staff_id: str) -> Account | None:
    row = await conn.fetchrow(_ACCOUNT, staff_id)
    return _account(row) if row is not None else None


async def list_accounts(conn: asyncpg.Connection) -> list[Account]:
    return [_account(r) for r in await conn.fetch(_ACCOUNTS)]


async def find_by_email(conn: asyncpg.Connection, email: str) -> str | None:
    found = await conn.fetchval(_ACCOUNT_BY_EMAIL, email.strip())
    return str(found) if found is not None else None


async def set_active(conn: asyncpg.Connection, identity: Identity, staff_id: str, active: bool) -> Account:
    """Deactivate or reactivate; setting the state it already has changes (and audits) nothing."""
    if await get_account(conn, staff_id) is None:
        raise AccountError(404, [{"field": "id", "message": "no such account"}])
    if staff_id == identity.actor_id and not active:
        # The last admin locking themselves out would leave the install without one.
        raise AccountError(409, [{"field": "active", "message": "you cannot deactivate your own account"}])
    changed = await conn.fetchrow(_SET_ACTIVE, staff_id, active)
    if changed is not None:
        if changed["role"] == "case_manager":
            await conn.execute(_SYNC_CASE_MANAGER, staff_id, active)
        action = "staff.reactivate" if active else "staff.deactivate"
        await audit.record(conn, identity, action, "staff", staff_id, {"role": changed["role"]})
    found = await get_account(conn, staff_id)
    if found is None:  # pragma: no cover - read in this transaction
        raise AccountError(404, [{"field": "id", "message": "no such account"}])
    return found


async def reset_password(
    conn: asyncpg.Connection, identity: Identity, staff_id: str, password_hash: str
) -> str:
    """Replace the password with a one-time one (hashed by the caller); returns the account's email."""
    email = await conn.fetchval(_RESET_PASSWORD, staff_id, password_hash)
    if email is None:
        raise AccountError(404, [{"field": "id", "message": "no such account"}])
    await audit.record(conn, identity, "staff.reset_password", "staff", staff_id)
    return str(email)
