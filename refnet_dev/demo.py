"""Seed the demo network (nine partners, case managers in both regions, staff) and write its credentials."""

from __future__ import annotations

import json
import os
import re
import secrets
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from shared.codes import NEED_CODES
from shared.credentials import hash_api_key, hash_password, new_api_key

__all__ = ["PARTNERS", "ascii_fold", "seed_demo"]

PARTNERS: tuple[tuple[str, str], ...] = (
    ("South LA Youth Shelter", "youth_shelter"),
    ("Watts Community Health Clinic", "health_clinic"),
    ("Crenshaw High School Wellness Center", "school"),
    ("Street Outreach Collective", "street_outreach"),
    ("Youth Legal Aid Project", "legal_aid"),
    ("St. Vincent Emergency Department", "emergency_room"),
    ("Valley Youth Shelter", "youth_shelter"),
    ("San Fernando Valley Refugee Services", "refugee_services"),
    ("Pacoima Family Resource Center", "community_organization"),
)

# Each region's case managers together serve every need code; some speak Spanish, one Korean.
_CASE_MANAGERS: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    (
        "Ana Reyes",
        "south_la",
        ("housing", "basic_needs", "family", "safety_planning", "peer_support"),
        ("en", "es"),
    ),
    ("Marcus Hill", "south_la", ("mental_health", "substance_use", "medical", "lgbtq_affirming"), ("en",)),
    ("Lucia Gómez", "south_la", ("legal", "immigration", "education", "employment"), ("en", "es")),
    ("Denise Carter", "south_la", NEED_CODES, ("en",)),
    (
        "Jin Park",
        "san_fernando_valley",
        ("housing", "basic_needs", "employment", "education", "family"),
        ("en", "ko"),
    ),
    (
        "Sofía Morales",
        "san_fernando_valley",
        ("mental_health", "substance_use", "medical", "safety_planning", "peer_support"),
        ("en", "es"),
    ),
    ("Tom Whitaker", "san_fernando_valley", ("legal", "immigration", "lgbtq_affirming", "housing"), ("en",)),
)


# Optional routing specialisms (services.routing.policy.SPECIALISMS). Only ones that add to the score,
# not age bands, which would keep some youth from some case managers.
_SPECIALISMS: dict[str, tuple[str, ...]] = {
    "Marcus Hill": ("lgbtq",),
    "Tom Whitaker": ("lgbtq", "boys_young_men"),
}


def ascii_fold(text: str) -> str:
    """Latin letters without their accents ("Lucía Gómez" -> "Lucia Gomez"): each character decomposed
    (NFKD) and its combining marks dropped; what has no ASCII form is left out."""
    decomposed = unicodedata.normalize("NFKD", text)
    return (
        "".join(ch for ch in decomposed if not unicodedata.combining(ch)).encode("ascii", "ignore").decode()
    )


def _email(name: str, domain: str = "demo.refnet.local") -> str:
    """A person's demo address from their name as displayed: "Lucía Gómez" -> lucia.gomez@demo.refnet.local."""
    words = re.findall(r"[a-z0-9]+", ascii_fold(name).lower())
    return f"{'.'.join(words)}@{domain}"


async def seed_demo(conn: asyncpg.Connection, base_url: str) -> dict[str, Any]:
    """Insert the demo network in one transaction and return the credentials document."""
    creds: dict[str, Any] = {
        "base_url": base_url,
        "partners": [],
        "case_managers": [],
        "supervisors": [],
        "admins": [],
        "evaluators": [],
    }
    async with conn.transaction():
        # Seeding is a system act (and must pass row-level security when not run as a superuser).
        await conn.execute("SELECT set_config('app.role', 'system', true)")
        for name, kind in PARTNERS:
            pid = uuid.uuid4()
            key = new_api_key()
            await conn.execute(
                "INSERT INTO partners (id, name, kind, contact_email) VALUES ($1, $2, $3, $4)",
                pid,
                name,
                kind,
                _email(name, "partners.refnet.local"),
            )
            await conn.execute(
                "INSERT INTO api_keys (id, partner_id, prefix, key_hash) VALUES ($1, $2, $3, $4)",
                uuid.uuid4(),
                pid,
                key[:8],
                hash_api_key(key),
            )
            creds["partners"].append({"id": str(pid), "name": name, "api_key": key})

        async def staff(name: str, role: str, region: str | None) -> tuple[uuid.UUID, str, str]:
            sid = uuid.uuid4()
            password = secrets.token_urlsafe(12)
            email = _email(name)
            await conn.execute(
                "INSERT INTO staff (id, email, display_name, role, region, password_hash) VALUES ($1,$2,$3,$4,$5,$6)",
                sid,
                email,
                name,
                role,
                region,
                hash_password(password),
            )
            return sid, email, password

        for name, region, needs, languages in _CASE_MANAGERS:
            sid, email, password = await staff(name, "case_manager", region)
            specialisms = list(_SPECIALISMS.get(name, ()))
            await conn.execute(
                "INSERT INTO case_managers (staff_id, regions, needs, languages, capacity, specialisms)"
                " VALUES ($1, $2, $3, $4, 12, $5)",
                sid,
                [region],
                list(needs),
                list(languages),
                specialisms,
            )
            creds["case_managers"].append(
                {
                    "id": str(sid),
                    "name": name,
                    "email": email,
                    "password": password,
                    "regions": [region],
                    "needs": list(needs),
                    "languages": list(languages),
                    "capacity": 12,
                    "specialisms": specialisms,
                }
            )
        for name, region in (("Grace Okafor", "south_la"), ("Daniel Levy", "san_fernando_valley")):
            sid, email, password = await staff(name, "supervisor", region)
            creds["supervisors"].append(
                {"id": str(sid), "email": email, "password": password, "region": region}
            )
        sid, email, password = await staff("Refnet Admin", "admin", None)
        creds["admins"].append({"id": str(sid), "email": email, "password": password})
        sid, email, password = await staff("Program Evaluator", "evaluator", None)
        creds["evaluators"].append({"id": str(sid), "email": email, "password": password})
        # The agency's own hotline and walk-in intake (issue 17).
        sid, email, password = await staff("Hotline Intake", "intake_staff", None)
        creds["intake_staff"] = [{"id": str(sid), "email": email, "password": password}]
    return creds


def write_credentials(path: Path, creds: dict[str, Any]) -> None:
    # Demo secrets only, readable by the owner alone.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(creds, fh, indent=2, ensure_ascii=False)
        fh.write("\n")
