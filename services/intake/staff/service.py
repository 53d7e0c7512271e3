"""Staff sign-in (argon2 off the event loop, throttled per email and address), password changes, profiles."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from collections.abc import Callable, Collection
from datetime import datetime
from typing import TypeVar

import asyncpg
import msgspec
import structlog

from services.intake.core.auth import Caller, account_caller, issue_token, scope_region
from services.intake.core.dependencies import CallerDb
from services.intake.core.problems import Problem
from services.intake.staff import accounts, roster
from services.intake.staff.schemas import (
    CaseManagerCreated,
    CaseManagerIn,
    CaseManagerPatch,
    StaffCreated,
    StaffIn,
    TokenResponse,
)
from services.intake.staff.throttle import SignInThrottle
from shared import audit
from shared.casework import LOCAL_TZ
from shared.credentials import hash_password, new_password, verify_password
from shared.db import SYSTEM, load_sql, transaction

__all__ = [
    "MIN_PASSWORD",
    "account_listing",
    "change_password",
    "check_new_password",
    "create_account",
    "create_case_manager",
    "get_case_manager",
    "list_case_managers",
    "reset_account_password",
    "set_account_active",
    "sign_in",
    "update_case_manager",
]

log = structlog.get_logger("refnet.intake")

MIN_PASSWORD = 12
T = TypeVar("T")

_PKG = "services.intake.staff"
_SIGN_IN_ACCOUNT = load_sql(_PKG, "sign_in_account")
_PASSWORD_HASH = load_sql(_PKG, "password_hash")
_CHANGE_PASSWORD = load_sql(_PKG, "change_password")
_WRONG = "The email or password is not correct."
# At most this many argon2 computations at once (each takes a core for ~0.3 s): a flood of sign-ins
# queues for these instead of taking every core from the requests being served.
_ARGON2_SLOTS = max(1, (os.cpu_count() or 2) // 2)
_slots: dict[int, asyncio.Semaphore] = {}


async def _argon2(fn: Callable[..., T], *args: str | None) -> T:
    """Run an argon2 hash or verification in a worker thread, a bounded number at a time."""
    loop = asyncio.get_running_loop()
    slots = _slots.get(id(loop))
    if slots is None:
        slots = _slots[id(loop)] = asyncio.Semaphore(_ARGON2_SLOTS)
    async with slots:
        return await asyncio.to_thread(fn, *args)


# --------------------------------------------------------------------------- sign-in


async def sign_in(
    pool: asyncpg.Pool,
    secret: str,
    ttl: int,
    email: str,
    password: str,
    *,
    client: str = "",
    throttle: SignInThrottle | None = None,
) -> TokenResponse:
    """A bearer token for a correct email and password of an active account.

    Unknown emails, wrong passwords and deactivated accounts get the same answer, cost (argon2 runs
    either way, in a worker thread so the event loop keeps serving) and throttling, which is per email
    and client address (``throttle``): nobody can lock a person out from elsewhere.
    """
    email = email.strip()
    if throttle is not None:
        wait = throttle.wait(email, client, time.monotonic())
        if wait > 0:
            raise Problem(
                429, "Too many failed sign-in attempts; try again later.", headers={"Retry-After": str(wait)}
            )
    # Authentication acts as the system: there is no caller yet.
    async with transaction(pool, SYSTEM) as conn:
        row = await conn.fetchrow(_SIGN_IN_ACCOUNT, email)
    stored = row["password_hash"] if row is not None and row["active"] else None
    # Verify outside the transaction and off the event loop: argon2 is deliberately slow.
    ok = await _argon2(verify_password, stored, password)
    if row is None or not ok:
        if throttle is not None:
            throttle.failed(email, client, time.monotonic())
        async with transaction(pool, SYSTEM) as conn:
            target = str(row["id"]) if row is not None else None
            await audit.record(conn, SYSTEM, "auth.login_failed", "staff", target)
        log.info("auth.login_failed")
        raise Problem(401, _WRONG, headers={"WWW-Authenticate": "Bearer"})
    if throttle is not None:
        throttle.succeeded(email, client)
    staff_id = str(row["id"])
    caller = account_caller(staff_id, row["role"], row["region"], row["partner_id"])
    async with transaction(pool, SYSTEM) as conn:
        await audit.record(conn, caller.identity, "auth.login", "staff", staff_id)
    log.info("auth.login", staff_id=staff_id, role=row["role"])
    return TokenResponse(
        access_token=issue_token(secret, staff_id, row["role"], row["region"], ttl, row["token_version"]),
        expires_in=ttl,
        password_change_required=row["password_change_required"],
    )


async def change_password(
    pool: asyncpg.Pool, caller: Caller, current: str, new: str, secret: str, ttl: int
) -> str:
    """The person's own new password (at least 12 characters, not the current one). Earlier tokens stop
    working; returns a fresh token for the web session that asked."""
    problems = check_new_password(current, new)
    if problems:
        raise Problem(422, "; ".join(e["message"] for e in problems), errors=problems)
    async with transaction(pool, SYSTEM) as conn:
        stored = await conn.fetchval(_PASSWORD_HASH, caller.id)
    if stored is None or not await _argon2(verify_password, stored, current):
        field = [{"field": "current_password", "message": "is not your current password"}]
        raise Problem(422, "The current password is not correct.", errors=field)
    new_hash = await _argon2(hash_password, new)
    async with transaction(pool, SYSTEM) as conn:
        row = await conn.fetchrow(_CHANGE_PASSWORD, caller.id, new_hash)
        await audit.record(conn, caller.identity, "auth.password_changed", "staff", caller.id)
    if row is None:  # pragma: no cover - read just above
        raise Problem(401, "The access token is invalid.", headers={"WWW-Authenticate": "Bearer"})
    return issue_token(secret, caller.id, row["role"], row["region"], ttl, row["token_version"])


def check_new_password(current: str, new: str) -> list[dict[str, str]]:
    """Every problem with a chosen password (pure)."""
    errors = []
    if len(new) < MIN_PASSWORD:
        errors.append({"field": "new_password", "message": f"must be at least {MIN_PASSWORD} characters"})
    elif new == current:
        errors.append({"field": "new_password", "message": "must differ from the current password"})
    return errors


# --------------------------------------------------------------------------- case manager profiles


def _roster_problem(exc: roster.RosterError) -> Problem:
    errors = [{"field": e.field, "message": e.message} for e in exc.errors]
    return Problem(exc.status, "; ".join(e["message"] for e in errors), errors=errors)


def _check(profile: roster.Profile, region_codes: Collection[str]) -> None:
    errors = roster.check_profile(profile, region_codes, datetime.now(LOCAL_TZ).date())
    if errors:
        raise _roster_problem(roster.RosterError(errors))


def _staff_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Problem(404, "No such case manager.") from None


async def list_case_managers(
    conn: asyncpg.Connection,
    caller: Caller,
    region_codes: Collection[str],
    region: str | None = None,
    status: str | None = None,
) -> list[roster.ProfileView]:
    """Profiles with their load (a supervisor: their region only)."""
    return await roster.list_profiles(conn, scope_region(caller, region, region_codes), status)


async def create_case_manager(
    db: CallerDb, region_codes: Collection[str], data: CaseManagerIn
) -> CaseManagerCreated:
    """A staff account and routing profile; a first password is generated (shown once) unless given."""
    profile = roster.Profile(
        email=data.email,
        name=data.name,
        regions=data.regions,
        needs=data.needs,
        languages=data.languages,
        capacity=data.capacity,
        status=data.status,
        away_until=data.away_until,
        specialisms=data.specialisms,
    )
    _check(profile, region_codes)
    generated = None if data.password else secrets.token_urlsafe(12)
    # Hashed before the transaction: argon2 is deliberately slow and must not hold a connection.
    password_hash = await _argon2(hash_password, data.password or generated or "")
    try:
        async with db.transaction() as conn:
            view, _ = await roster.save_profile(
                conn, db.identity, profile, via="api", password_hash=password_hash
            )
    except roster.RosterError as exc:
        raise _roster_problem(exc) from None
    return CaseManagerCreated(**msgspec.structs.asdict(view), password=generated)


async def get_case_manager(
    conn: asyncpg.Connection, caller: Caller, case_manager_id: str
) -> roster.ProfileView:
    view = await roster.get_profile(conn, _staff_id(case_manager_id))
    if view is None or (caller.role == "supervisor" and caller.region not in view.regions):
        raise Problem(404, "No such case manager.")
    return view


async def update_case_manager(
    conn: asyncpg.Connection,
    caller: Caller,
    region_codes: Collection[str],
    case_manager_id: str,
    data: CaseManagerPatch,
) -> roster.ProfileView:
    """Change the fields given. Supervisors may change load, availability and skills, not identity."""
    cid = _staff_id(case_manager_id)
    if caller.role == "supervisor" and (data.email or data.name or data.regions):
        raise Problem(403, "Only an administrator can change a case manager's email, name or regions.")
    current = await roster.get_profile(conn, cid)
    if current is None or (caller.role == "supervisor" and caller.region not in current.regions):
        raise Problem(404, "No such case manager.")
    status = data.status or current.status
    away_until = current.away_until if data.away_until is msgspec.UNSET else data.away_until
    if data.status is not None and data.status != "away" and data.away_until is msgspec.UNSET:
        away_until = None  # back at work: the old return date no longer applies
    profile = roster.Profile(
        email=data.email or current.email,
        name=data.name or current.name,
        regions=data.regions or current.regions,
        needs=data.needs or current.needs,
        languages=data.languages or current.languages,
        capacity=current.capacity if data.capacity is None else data.capacity,
        status=status,
        away_until=away_until,
        specialisms=current.specialisms if data.specialisms is None else data.specialisms,
    )
    _check(profile, region_codes)
    try:
        view, _ = await roster.save_profile(conn, caller.identity, profile, via="api", staff_id=cid)
    except roster.RosterError as exc:
        raise _roster_problem(exc) from None
    return view


# --------------------------------------------------------------------------- accounts (admin API and pages)


def _account_problem(exc: accounts.AccountError) -> Problem:
    return Problem(exc.status, str(exc), errors=exc.errors)


async def create_account(db: CallerDb, region_codes: Collection[str], data: StaffIn) -> StaffCreated:
    """A new account of any role with a one-time password (hashed off the event loop, before the
    transaction), shown once in the answer."""
    password = new_password()
    password_hash = await _argon2(hash_password, password)
    try:
        async with db.transaction() as conn:
            made = await accounts.create_account(
                conn,
                db.identity,
                email=data.email,
                name=data.name,
                role=data.role,
                regions=data.regions,
                partner_id=data.partner_id,
                password_hash=password_hash,
                region_codes=region_codes,
            )
    except accounts.AccountError as exc:
        raise _account_problem(exc) from None
    return StaffCreated(
        id=made.id,
        email=made.email,
        role=made.role,
        active=made.active,
        password=password,
        name=made.name,
        regions=made.regions,
        partner_id=made.partner_id,
    )


async def set_account_active(db: CallerDb, staff_id: str, active: bool) -> accounts.Account:
    try:
        async with db.transaction() as conn:
            return await accounts.set_active(conn, db.identity, staff_id, active)
    except accounts.AccountError as exc:
        raise _account_problem(exc) from None


async def reset_account_password(db: CallerDb, staff_id: str) -> tuple[str, str]:
    """A new one-time password: (the account's email, the password)."""
    password = new_password()
    password_hash = await _argon2(hash_password, password)
    try:
        async with db.transaction() as conn:
            email = await accounts.reset_password(conn, db.identity, staff_id, password_hash)
    except accounts.AccountError as exc:
        raise _account_problem(exc) from None
    return email, password


async def account_listing(db: CallerDb) -> list[accounts.Account]:
    async with db.transaction() as conn:
        return await accounts.list_accounts(conn)
