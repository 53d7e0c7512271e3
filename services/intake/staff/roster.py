"""Case manager profiles: validation, create/update, listing and CSV roster import; shared by CLI and admin API."""

from __future__ import annotations

import csv
import io
import secrets
import uuid
from collections.abc import Callable, Collection, Sequence
from datetime import date, datetime
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import asyncpg
import msgspec
from msgspec import Meta

from shared import audit
from shared.codes import NeedCode
from shared.credentials import hash_password as _hash_password
from shared.db import Identity, create_pool, load_sql, transaction

__all__ = [
    "CSV_COLUMNS",
    "ImportResult",
    "Profile",
    "ProfileError",
    "ProfileView",
    "RosterError",
    "check_profile",
    "get_profile",
    "import_roster",
    "list_profiles",
    "parse_roster",
    "run_import",
    "run_list",
    "save_profile",
]

Specialism = Literal["boys_young_men", "lgbtq", "minors_only", "adults_18_24"]
CaseManagerStatus = Literal["active", "away", "inactive"]
# No NUL anywhere: PostgreSQL text cannot hold it, and the request would fail as a 500, not a 422.
Email = Annotated[
    str,
    Meta(
        min_length=3,
        max_length=320,
        pattern=r"^[^@\s\x00]+@[^@\s\x00]+$",
        extra={"invalid": "must be an email address (name@example.org)"},
    ),
]
Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=200,
        pattern=r"^[^\x00]*[^\s\x00][^\x00]*$",
        extra={"invalid": "must not be blank (and hold no NUL characters)"},
    ),
]
Language = Annotated[
    str,
    Meta(
        pattern=r"^[a-z]{2,3}(?!\n)$",
        extra={"invalid": 'must be an ISO 639 language code in lower case, e.g. "es"'},
    ),
]
# The operator at the command line has no staff account: audited as the system, with via="cli".
OPERATOR = Identity(role="system")
_LOCAL_TZ = ZoneInfo("America/Los_Angeles")
CSV_COLUMNS = (
    "email",
    "name",
    "regions",
    "needs",
    "languages",
    "capacity",
    "status",
    "away_until",
    "specialisms",
)
_REQUIRED = ("email", "name", "regions", "needs", "capacity")

_PKG = "services.intake.staff"
_PROFILES = load_sql(_PKG, "profiles")
_PROFILE = load_sql(_PKG, "profile")
_STAFF_BY_EMAIL = load_sql(_PKG, "staff_by_email")
_INSERT_ACCOUNT = load_sql(_PKG, "insert_case_manager_account")
_LOCK_PROFILE = load_sql(_PKG, "lock_profile")
_ACCOUNT_IDENTITY = load_sql(_PKG, "account_identity")
_UPDATE_ACCOUNT_IDENTITY = load_sql(_PKG, "update_account_identity")
_INSERT_PROFILE = load_sql(_PKG, "insert_profile")
_UPDATE_PROFILE = load_sql(_PKG, "update_profile")


class Profile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What routing knows about a case manager (the CSV columns; lists are separated by ';' there)."""

    email: Email
    name: Name
    regions: Annotated[list[str], Meta(min_length=1, max_length=20)]
    needs: Annotated[list[NeedCode], Meta(min_length=1, max_length=13)]
    languages: Annotated[list[Language], Meta(min_length=1, max_length=20)] = msgspec.field(
        default_factory=lambda: ["en"]
    )
    capacity: Annotated[int, Meta(ge=0, le=1000)]
    status: CaseManagerStatus = "active"
    away_until: date | None = None
    specialisms: Annotated[list[Specialism], Meta(max_length=4)] = msgspec.field(default_factory=list)


class ProfileView(msgspec.Struct, kw_only=True):
    id: str
    email: str
    name: str
    regions: list[str]
    needs: list[NeedCode]
    languages: list[str]
    specialisms: list[Specialism]
    capacity: int
    active_count: int
    status: CaseManagerStatus
    away_until: date | None
    updated_at: datetime


class ProfileError(msgspec.Struct, frozen=True):
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        return f"{where}{self.field}: {self.message}"


class RosterError(Exception):
    """The profile or roster was refused; nothing was written. ``errors`` name the fields (and lines)."""

    def __init__(self, errors: Sequence[ProfileError], status: int = 422) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = list(errors)
        self.status = status


class ImportResult(msgspec.Struct, kw_only=True):
    created: list[str]
    updated: list[str]
    # email -> generated password for new accounts (shown once; the CLI writes them to a 0600 file).
    passwords: dict[str, str]


def check_profile(p: Profile, region_codes: Collection[str], today: date) -> list[ProfileError]:
    """Rules a type cannot express; empty when the profile may be saved."""
    errors: list[ProfileError] = []
    for field, values in (("regions", p.regions), ("needs", p.needs), ("languages", p.languages)):
        if len(set(values)) != len(values):
            errors.append(ProfileError(field, "values must be distinct"))
    unknown = [r for r in p.regions if r not in region_codes]
    if unknown:
        errors.append(
            ProfileError(
                "regions", f"unknown region {', '.join(unknown)} (known: {', '.join(sorted(region_codes))})"
            )
        )
    if {"minors_only", "adults_18_24"} <= set(p.specialisms):
        errors.append(ProfileError("specialisms", "minors_only and adults_18_24 exclude each other"))
    if p.status == "away":
        if p.away_until is None:
            errors.append(ProfileError("away_until", "an away case manager needs the date they are back"))
        elif p.away_until <= today:
            errors.append(ProfileError("away_until", "the date they are back must be in the future"))
    elif p.away_until is not None:
        errors.append(ProfileError("away_until", "only an away case manager has a date they are back"))
    return errors


def _view(r: asyncpg.Record) -> ProfileView:
    return ProfileView(
        id=str(r["staff_id"]),
        email=r["email"],
        name=r["display_name"],
        regions=list(r["regions"]),
        needs=list(r["needs"]),
        languages=list(r["languages"]),
        specialisms=list(r["specialisms"]),
        capacity=r["capacity"],
        active_count=r["active_count"],
        status=r["status"],
        away_until=r["away_until"],
        updated_at=r["updated_at"],
    )


async def list_profiles(
    conn: asyncpg.Connection, region: str | None = None, status: str | None = None
) -> list[ProfileView]:
    rows = await conn.fetch(_PROFILES, region, status)
    return [_view(r) for r in rows]


async def get_profile(conn: asyncpg.Connection, staff_id: str) -> ProfileView | None:
    row = await conn.fetchrow(_PROFILE, staff_id)
    return None if row is None else _view(row)


async def save_profile(
    conn: asyncpg.Connection,
    identity: Identity,
    profile: Profile,
    *,
    via: str,
    password_hash: str | None = None,
    staff_id: str | None = None,
) -> tuple[ProfileView, bool]:
    """Create a case manager (staff account + profile; needs ``password_hash``), or update the one with
    ``staff_id``. Runs in the caller's transaction (row-level security applies to them) and audits the
    change; returns the saved view and whether it is new. Never touches ``active_count``: routing's.
    """
    if staff_id is None:
        if password_hash is None:
            raise AssertionError("a new account needs a password hash")
        existing = await conn.fetchrow(_STAFF_BY_EMAIL, profile.email)
        if existing is not None:
            raise RosterError([ProfileError("email", f"{profile.email} is already in use")], 409)
        sid = str(uuid.uuid4())
        try:
            await conn.execute(
                _INSERT_ACCOUNT,
                sid,
                profile.email,
                profile.name,
                profile.regions[0],
                password_hash,
            )
        except asyncpg.UniqueViolationError:
            raise RosterError([ProfileError("email", f"{profile.email} is already in use")], 409) from None
        before = None
    else:
        sid = staff_id
        before = await conn.fetchrow(_LOCK_PROFILE, sid)
        if before is None:
            raise RosterError([ProfileError("id", "no such case manager")], 404)
        current = await conn.fetchrow(_ACCOUNT_IDENTITY, sid)
        wanted = (profile.email, profile.name, profile.regions[0])
        if current is not None and (current["email"], current["display_name"], current["region"]) != wanted:
            # The staff row's region is the home region that supervisors' visibility keys on.
            try:
                await conn.execute(_UPDATE_ACCOUNT_IDENTITY, sid, *wanted)
            except asyncpg.UniqueViolationError:
                raise RosterError(
                    [ProfileError("email", f"{profile.email} is already in use")], 409
                ) from None
    values = (
        sid,
        profile.regions,
        list(profile.needs),
        profile.languages,
        profile.capacity,
        profile.status,
        profile.away_until,
        list(profile.specialisms),
    )
    if before is None:
        await conn.execute(_INSERT_PROFILE, *values)
    else:
        await conn.execute(_UPDATE_PROFILE, *values)
    changed = _changed_fields(before, profile)
    await audit.record(
        conn,
        identity,
        "roster.create" if before is None else "roster.update",
        "case_manager",
        sid,
        {"fields": changed, "via": via},
    )
    view = await get_profile(conn, sid)
    if view is None:  # row-level security let the caller write but not read it back: not theirs
        raise RosterError([ProfileError("id", "no such case manager")], 404)
    return view, before is None


def _changed_fields(before: asyncpg.Record | None, p: Profile) -> list[str]:
    if before is None:
        return ["profile"]
    new = {
        "regions": list(p.regions),
        "needs": list(p.needs),
        "languages": list(p.languages),
        "capacity": p.capacity,
        "status": p.status,
        "away_until": p.away_until,
        "specialisms": list(p.specialisms),
    }
    return [k for k, v in new.items() if (list(before[k]) if isinstance(v, list) else before[k]) != v]


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.replace(",", ";").split(";") if v.strip()]


def parse_roster(
    text: str, region_codes: Collection[str], today: date
) -> tuple[list[Profile], list[ProfileError]]:
    """Parse a roster CSV (header row; lists separated by ';'); every problem is reported with its line."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [h.strip() for h in reader.fieldnames or []]
    errors: list[ProfileError] = []
    missing = [c for c in _REQUIRED if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS]
    if missing or unknown:
        if missing:
            errors.append(ProfileError("header", f"missing column(s): {', '.join(missing)}", 1))
        if unknown:
            errors.append(ProfileError("header", f"unknown column(s): {', '.join(unknown)}", 1))
        return [], errors
    profiles: list[Profile] = []
    seen: dict[str, int] = {}
    for raw in reader:
        line = reader.line_num
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(row.values()):
            continue
        doc: dict[str, object] = {"email": row["email"], "name": row["name"]}
        for col in ("regions", "needs", "languages", "specialisms"):
            if row.get(col):
                doc[col] = _split(row[col])
            elif col in _REQUIRED:
                doc[col] = []
        for col in ("status", "away_until"):
            if row.get(col):
                doc[col] = row[col]
        doc["capacity"] = row["capacity"]
        try:
            # Lax: CSV cells are text ("12" is a capacity, "2026-12-01" a date).
            p = msgspec.convert(doc, Profile, strict=False)
        except msgspec.ValidationError as exc:
            message, _, path = str(exc).partition(" - at `$.")
            errors.append(ProfileError(path.rstrip("`").split("[")[0] or "row", message, line))
            continue
        key = p.email.lower()
        if key in seen:
            errors.append(ProfileError("email", f"{p.email} is also on line {seen[key]}", line))
            continue
        seen[key] = line
        errors.extend(msgspec.structs.replace(e, line=line) for e in check_profile(p, region_codes, today))
        profiles.append(p)
    if not profiles and not errors:
        errors.append(ProfileError("file", "no case managers in the roster", None))
    return profiles, errors


async def import_roster(
    conn: asyncpg.Connection,
    identity: Identity,
    profiles: Sequence[Profile],
    hash_password: Callable[[str], str],
    *,
    via: str = "cli",
) -> ImportResult:
    """Create or update (by email) every profile in the caller's transaction: all of the roster or none."""
    result = ImportResult(created=[], updated=[], passwords={})
    for p in profiles:
        existing = await conn.fetchrow(_STAFF_BY_EMAIL, p.email)
        if existing is not None and existing["role"] != "case_manager":
            raise RosterError([ProfileError("email", f"{p.email} belongs to a {existing['role']}")], 409)
        if existing is None:
            password = secrets.token_urlsafe(12)
            view, _ = await save_profile(conn, identity, p, via=via, password_hash=hash_password(password))
            result.created.append(view.email)
            result.passwords[view.email] = password
        else:
            view, _ = await save_profile(conn, identity, p, via=via, staff_id=str(existing["id"]))
            result.updated.append(view.email)
    return result


async def run_import(
    dsn: str, text: str, region_codes: Collection[str], *, dry_run: bool = False
) -> tuple[ImportResult, list[ProfileError]]:
    """`refnet roster import`: validate the whole file, then write it in one transaction (or not at all)."""
    today = datetime.now(_LOCAL_TZ).date()
    profiles, errors = parse_roster(text, region_codes, today)
    empty = ImportResult(created=[], updated=[], passwords={})
    if errors or dry_run:
        return empty, errors
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        async with transaction(pool, OPERATOR) as conn:
            return await import_roster(conn, OPERATOR, profiles, _hash_password, via="cli"), []
    except RosterError as exc:
        return empty, exc.errors
    finally:
        await pool.close()


async def run_list(dsn: str, region: str | None, status: str | None) -> list[ProfileView]:
    """`refnet roster list`."""
    pool = await create_pool(dsn, min_size=1, max_size=1)
    try:
        async with transaction(pool, OPERATOR) as conn:
            return await list_profiles(conn, region, status)
    finally:
        await pool.close()
