"""The FHIR R4 API's work: a Bundle submitted as a referral (the referral service's own path), Tasks read
and searched, the CapabilityStatement. Errors are Problems whose fields name FHIR elements."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec

from services.intake.core.auth import Caller
from services.intake.core.dependencies import CallerDb
from services.intake.core.problems import Problem
from services.intake.fhir.mapping import BundleInvalid, fhir_expression, parse_bundle, task_resource
from services.intake.referrals import service as referrals
from services.intake.referrals.schemas import ReferralIn
from shared.codes import SHARE_STATUS_SCOPE
from shared.crypto import KeyRing
from shared.db import load_sql
from shared.regions import Catalogue

__all__ = ["FHIR_KEY_PREFIX", "capability", "read_task", "search_tasks", "submit_bundle"]

_PKG = "services.intake.fhir"
_TASK_IDENTIFIER = load_sql(_PKG, "task_identifier")
_TASKS_SINCE = load_sql(_PKG, "tasks_since")
# A Bundle's Task identifier is the referral's idempotency key under this prefix, per partner: the same
# Bundle again replays the original answer; another Bundle with the identifier is a 409.
FHIR_KEY_PREFIX = "fhir-task:"
FHIR_VERSION = "4.0.1"
MAX_COUNT = 1000


def _invalid(issues: list[dict[str, str]], detail: str | None = None) -> Problem:
    return Problem(422, detail or "; ".join(f"{i['field']}: {i['message']}" for i in issues), errors=issues)


def _referral_body(doc: Any) -> tuple[ReferralIn, str]:
    try:
        parsed = parse_bundle(doc)
    except BundleInvalid as exc:
        raise _invalid([{"field": i.expression, "message": i.message} for i in exc.issues]) from None
    try:
        # The API's own body type and conversion: what the Bundle says is refused exactly as JSON would be.
        body = msgspec.convert(parsed.body, ReferralIn)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).partition(" - at `$")
        field = path.rstrip("`").lstrip(".")
        raise _invalid([{"field": fhir_expression(field), "message": message}]) from None
    return body, parsed.task_identifier


async def submit_bundle(
    db: CallerDb,
    caller: Caller,
    doc: Any,
    *,
    regions: Catalogue,
    keyring: KeyRing,
    youth_secret: bytes,
    trace_id: str,
) -> dict[str, Any]:
    """Create the referral a transaction Bundle stands for (or replay it) and answer the Bundle."""
    body, identifier = _referral_body(doc)
    try:
        done = await referrals.submit(
            db,
            caller,
            body,
            idempotency_key=FHIR_KEY_PREFIX + identifier,
            regions=regions,
            keyring=keyring,
            youth_secret=youth_secret,
            trace_id=trace_id,
        )
    except Problem as exc:
        if exc.status_code == 422 and exc.errors:
            raise _invalid(
                [{"field": fhir_expression(e["field"]), "message": e["message"]} for e in exc.errors],
                exc.detail,
            ) from None
        if exc.slug == "idempotency-conflict":
            raise Problem(
                409,
                "This Task identifier was already used with a different Bundle.",
                errors=[{"field": "Task.identifier[0].value", "message": "already used"}],
                slug="idempotency-conflict",
            ) from None
        raise
    view = done.view
    entries = doc["entry"]
    answers: list[dict[str, Any]] = []
    for entry in entries:
        kind = entry["resource"]["resourceType"]
        response: dict[str, Any] = {"status": "201 Created", "lastModified": view.received_at.isoformat()}
        if kind == "Task":
            response["location"] = f"Task/{view.id}"
            response["etag"] = 'W/"1"'
        answers.append({"response": response})
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "transaction-response",
        "entry": answers,
    }


def _task_id(task_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(task_id)
    except ValueError:
        raise Problem(404, f"Task/{task_id} is not known.") from None


async def read_task(conn: asyncpg.Connection, caller: Caller, task_id: str) -> dict[str, Any]:
    """The partner's referral as a Task (another partner's, or none: 404)."""
    rid = _task_id(task_id)
    rows = await referrals.visible_referrals(conn, caller, referral_id=rid)
    if not rows:
        raise Problem(404, f"Task/{task_id} is not known.")
    identifier = await conn.fetchval(_TASK_IDENTIFIER, rid, FHIR_KEY_PREFIX)
    return task_resource(rows[0], identifier)


def _since(value: str | None) -> tuple[datetime | None, bool]:
    """``_lastUpdated`` as (instant, strictly after): ``geINSTANT`` or ``gtINSTANT``."""
    if value is None:
        return None, False
    prefix, instant = value[:2], value[2:]
    if prefix not in ("ge", "gt"):
        raise _invalid([{"field": "_lastUpdated", "message": "use ge<instant> or gt<instant>"}])
    try:
        moment = datetime.fromisoformat(instant)
        if moment.tzinfo is None:
            raise ValueError("no time zone")
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise _invalid(
            [
                {
                    "field": "_lastUpdated",
                    "message": "must be an instant with a time zone, e.g. 2026-11-20T10:00:00Z",
                }
            ]
        ) from None
    return moment, prefix == "gt"


async def search_tasks(
    conn: asyncpg.Connection, caller: Caller, base_url: str, last_updated: str | None, count: int
) -> dict[str, Any]:
    """The caller's Tasks changed since ``_lastUpdated``, oldest change first, as a searchset Bundle."""
    since, strict = _since(last_updated)
    rows = await conn.fetch(
        _TASKS_SINCE,
        caller.partner_id,
        since,
        strict,
        FHIR_KEY_PREFIX,
        min(count, MAX_COUNT) + 1,
        SHARE_STATUS_SCOPE,
    )
    more = len(rows) > count
    rows = rows[:count]
    base = base_url.rstrip("/") + "/fhir/r4"
    self_url = f"{base}/Task" + (f"?_lastUpdated={last_updated}" if last_updated else "")
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "type": "searchset",
        "link": [{"relation": "self", "url": self_url}],
        "entry": [
            {
                "fullUrl": f"{base}/Task/{r['id']}",
                "resource": task_resource(r, r["identifier"]),
                "search": {"mode": "match"},
            }
            for r in rows
        ],
    }
    if more and rows:
        # Polling resumes from the last change seen (ge: a Task changed at that very instant comes again).
        last = rows[-1]["updated_at"].isoformat().replace("+00:00", "Z")
        bundle["link"].append(
            {"relation": "next", "url": f"{base}/Task?_lastUpdated=ge{last}&_count={count}"}
        )
    else:
        bundle["total"] = len(rows)
    return bundle


def capability(base_url: str) -> dict[str, Any]:
    """What this server does in FHIR: transactions of referral Bundles, Task read and search."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-20",
        "publisher": "refnet",
        "kind": "instance",
        "software": {"name": "refnet"},
        "implementation": {
            "description": "refnet referral network: referrals as transaction Bundles, Tasks to follow them",
            "url": base_url.rstrip("/") + "/fhir/r4",
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Authorization: Bearer <partner API key or partner user token>.",
                "security": {"description": "Bearer tokens: partner API keys (rnk_...) or partner users."},
                "resource": [
                    {
                        "type": "Task",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "searchParam": [
                            {"name": "_lastUpdated", "type": "date", "documentation": "ge or gt an instant"}
                        ],
                    }
                ],
                "interaction": [{"code": "transaction"}],
            }
        ],
    }
