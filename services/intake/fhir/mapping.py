"""FHIR R4 to refnet and back, pure: a transaction Bundle becomes the referral body; a referral, a Task.

The mapping is CONTRACT.md's "FHIR R4" section. Every problem found is reported with the FHIR element it
concerns (an expression such as ``Patient.birthDate``), all of them at once; the referral rules proper
(age band, consent validity, ...) are the referral service's, whose field names ``fhir_expression``
translates back to FHIR elements.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import msgspec

from shared.codes import FHIR_TASK_STATUS, NEED_CODES, REFERRAL_SETTINGS

__all__ = [
    "CONSENT_METHOD_SYSTEM",
    "CONSENT_SCOPE_SYSTEM",
    "NEED_SYSTEM",
    "SETTING_EXTENSION",
    "TASK_IDENTIFIER_SYSTEM",
    "BundleInvalid",
    "Issue",
    "Parsed",
    "fhir_expression",
    "parse_bundle",
    "task_resource",
]

NEED_SYSTEM = "urn:refnet:need"
CONSENT_METHOD_SYSTEM = "urn:refnet:consent-method"
CONSENT_SCOPE_SYSTEM = "urn:refnet:consent-scope"
# Optional (refnet's own, documented in docs/fhir.md): where the youth was met, a referral setting code.
SETTING_EXTENSION = "urn:refnet:referral-setting"
TASK_IDENTIFIER_SYSTEM = "urn:refnet:partner-task"
REFERRAL_SYSTEM = "urn:refnet:referral"
STATUS_SYSTEM = "urn:refnet:referral-status"
REASON_SYSTEM = "urn:refnet:unroutable-reason"
MAX_IDENTIFIER = 200

_KINDS = ("Patient", "ServiceRequest", "Consent", "Task")
_FHIR_GENDERS = ("male", "female", "other", "unknown")


class Issue(msgspec.Struct, frozen=True):
    expression: str
    message: str


class BundleInvalid(Exception):
    """The Bundle cannot become a referral: every issue found, each naming its FHIR element."""

    def __init__(self, issues: list[Issue]) -> None:
        super().__init__("; ".join(i.message for i in issues))
        self.issues = issues


class Parsed(msgspec.Struct, frozen=True):
    """The referral body (as the API would have received it) and the Task's identifier."""

    body: dict[str, Any]
    task_identifier: str


# Referral body fields (the service's error names) -> the FHIR element they came from.
_EXPRESSIONS: tuple[tuple[str, str], ...] = (
    ("youth.first_name", "Patient.name[0].given[0]"),
    ("youth.last_name", "Patient.name[0].family"),
    ("youth.date_of_birth", "Patient.birthDate"),
    ("youth.phone", "Patient.telecom"),
    ("youth.gender", "Patient.gender"),
    ("youth", "Patient"),
    ("location", "Patient.address[0].postalCode"),
    ("needs", "ServiceRequest.category"),
    ("language", "Patient.communication[0].language.coding[0].code"),
    ("urgency", "ServiceRequest.priority"),
    ("consent.obtained_at", "Consent.dateTime"),
    ("consent.expires_at", "Consent.provision.period.end"),
    ("consent.method", "Consent.category[0].coding[0].code"),
    ("consent.scope", "Consent.provision.purpose"),
    ("consent", "Consent"),
    ("intake.referral_setting", f"ServiceRequest.extension('{SETTING_EXTENSION}')"),
    ("intake", "ServiceRequest.extension"),
    ("notes", "ServiceRequest.note"),
    ("Idempotency-Key", "Task.identifier[0].value"),
)


def fhir_expression(field: str) -> str:
    """The FHIR element a referral body field came from (the longest known prefix), else the Bundle."""
    for prefix, expression in _EXPRESSIONS:
        if field == prefix or field.startswith(prefix + ".") or field.startswith(prefix + "["):
            return expression
    return "Bundle"


class _Reader:
    """Collects issues while reading loosely typed JSON."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def fail(self, expression: str, message: str) -> None:
        self.issues.append(Issue(expression, message))

    def obj(self, value: Any, expression: str, *, required: bool = False) -> dict[str, Any] | None:
        if value is None:
            if required:
                self.fail(expression, "is required")
            return None
        if not isinstance(value, dict):
            self.fail(expression, "must be an object")
            return None
        return value

    def arr(self, value: Any, expression: str, *, required: bool = False) -> list[Any]:
        if value is None:
            if required:
                self.fail(expression, "is required")
            return []
        if not isinstance(value, list):
            self.fail(expression, "must be an array")
            return []
        return value

    def text(self, value: Any, expression: str, *, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.fail(expression, "is required")
            return None
        if not isinstance(value, str):
            self.fail(expression, "must be a string")
            return None
        return value

    def first(self, value: Any, expression: str, *, required: bool = False) -> dict[str, Any] | None:
        items = self.arr(value, expression, required=required)
        if not items:
            if required and isinstance(value, list):
                self.fail(expression, "needs at least one entry")
            return None
        return self.obj(items[0], f"{expression}[0]", required=True)


def _instant(r: _Reader, value: Any, expression: str) -> str | None:
    """A FHIR dateTime to the second with a time zone (what a consent's times must be)."""
    text = r.text(value, expression, required=True)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        r.fail(expression, "must be a dateTime with a time zone, e.g. 2026-11-20T10:00:00Z")
        return None
    if moment.tzinfo is None:
        r.fail(expression, "must have a time zone")
        return None
    return text


def _reference(r: _Reader, value: Any, expression: str, target: str, kind: str) -> None:
    ref = r.obj(value, expression, required=True)
    if ref is None:
        return
    reference = r.text(ref.get("reference"), f"{expression}.reference", required=True)
    if reference is not None and reference != target:
        r.fail(f"{expression}.reference", f"must refer to the Bundle's {kind} ({target})")


def _patient(r: _Reader, p: dict[str, Any], body: dict[str, Any]) -> None:
    youth: dict[str, Any] = {}
    name = r.first(p.get("name"), "Patient.name", required=True)
    if name is not None:
        given = r.arr(name.get("given"), "Patient.name[0].given", required=True)
        if given:
            first = r.text(given[0], "Patient.name[0].given[0]", required=True)
            if first is not None:
                youth["first_name"] = first
        elif "given" in name:
            r.fail("Patient.name[0].given", "needs at least one entry")
        family = r.text(name.get("family"), "Patient.name[0].family")
        if family is not None:
            youth["last_name"] = family
    born = r.text(p.get("birthDate"), "Patient.birthDate", required=True)
    if born is not None:
        try:
            youth["date_of_birth"] = date.fromisoformat(born).isoformat()
        except ValueError:
            r.fail("Patient.birthDate", "must be a full date (YYYY-MM-DD)")
    for i, tel in enumerate(r.arr(p.get("telecom"), "Patient.telecom")):
        t = r.obj(tel, f"Patient.telecom[{i}]")
        if t is not None and t.get("system") == "phone":
            value = r.text(t.get("value"), f"Patient.telecom[{i}].value", required=True)
            if value is not None:
                youth["phone"] = value
            break
    gender = r.text(p.get("gender"), "Patient.gender")
    if gender is not None:
        if gender in _FHIR_GENDERS:
            youth["gender"] = gender
        else:
            r.fail("Patient.gender", f"must be one of {', '.join(_FHIR_GENDERS)}")
    body["youth"] = youth
    address = r.first(p.get("address"), "Patient.address", required=True)
    if address is not None:
        postal = r.text(address.get("postalCode"), "Patient.address[0].postalCode", required=True)
        if postal is not None:
            body["location"] = {"zip": postal}
    communication = r.first(p.get("communication"), "Patient.communication")
    if communication is not None:
        language = r.obj(communication.get("language"), "Patient.communication[0].language", required=True)
        coding = (
            None
            if language is None
            else r.first(language.get("coding"), "Patient.communication[0].language.coding", required=True)
        )
        if coding is not None:
            expression = "Patient.communication[0].language.coding[0].code"
            code = r.text(coding.get("code"), expression, required=True)
            if code is not None:
                # BCP 47: the primary language subtag is the ISO 639-1 code refnet routes by.
                body["language"] = code.split("-")[0].lower()


def _service_request(r: _Reader, s: dict[str, Any], body: dict[str, Any]) -> None:
    if s.get("status") != "active":
        r.fail("ServiceRequest.status", "must be 'active'")
    if s.get("intent") != "order":
        r.fail("ServiceRequest.intent", "must be 'order'")
    priority = r.text(s.get("priority"), "ServiceRequest.priority")
    if priority is not None:
        if priority in ("routine", "urgent"):
            body["urgency"] = priority
        else:
            r.fail("ServiceRequest.priority", "must be 'routine' or 'urgent'")
    needs: list[str] = []
    for i, category in enumerate(r.arr(s.get("category"), "ServiceRequest.category", required=True)):
        c = r.obj(category, f"ServiceRequest.category[{i}]")
        for j, coding in enumerate(
            r.arr(None if c is None else c.get("coding"), f"ServiceRequest.category[{i}].coding")
        ):
            cd = r.obj(coding, f"ServiceRequest.category[{i}].coding[{j}]")
            if cd is None or cd.get("system") != NEED_SYSTEM:
                continue  # other code systems (SNOMED, the SDOH IG's) may ride along
            expression = f"ServiceRequest.category[{i}].coding[{j}].code"
            code = r.text(cd.get("code"), expression, required=True)
            if code is not None and code not in NEED_CODES:
                r.fail(expression, f"unknown need code {code!r}")
            elif code is not None:
                needs.append(code)
    if not needs:
        r.fail("ServiceRequest.category", f"needs at least one coding with system {NEED_SYSTEM}")
    body["needs"] = needs
    notes = [
        n["text"]
        for n in r.arr(s.get("note"), "ServiceRequest.note")
        if isinstance(n, dict) and isinstance(n.get("text"), str)
    ]
    if notes:
        body["notes"] = "\n".join(notes)
    for i, ext in enumerate(r.arr(s.get("extension"), "ServiceRequest.extension")):
        e = r.obj(ext, f"ServiceRequest.extension[{i}]")
        if e is not None and e.get("url") == SETTING_EXTENSION:
            code = r.text(e.get("valueCode"), f"ServiceRequest.extension[{i}].valueCode", required=True)
            if code is not None and code not in REFERRAL_SETTINGS:
                r.fail(f"ServiceRequest.extension[{i}].valueCode", f"unknown referral setting {code!r}")
            elif code is not None:
                body["intake"] = {"referral_setting": code}


def _consent(r: _Reader, c: dict[str, Any], body: dict[str, Any]) -> None:
    if c.get("status") != "active":
        r.fail("Consent.status", "must be 'active'")
    consent: dict[str, Any] = {}
    obtained = _instant(r, c.get("dateTime"), "Consent.dateTime")
    if obtained is not None:
        consent["obtained_at"] = obtained
    provision = r.obj(c.get("provision"), "Consent.provision", required=True)
    if provision is not None:
        period = r.obj(provision.get("period"), "Consent.provision.period", required=True)
        if period is not None:
            end = _instant(r, period.get("end"), "Consent.provision.period.end")
            if end is not None:
                consent["expires_at"] = end
        scope: list[str] = []
        for i, purpose in enumerate(
            r.arr(provision.get("purpose"), "Consent.provision.purpose", required=True)
        ):
            p = r.obj(purpose, f"Consent.provision.purpose[{i}]")
            if p is not None and p.get("system") == CONSENT_SCOPE_SYSTEM:
                code = r.text(p.get("code"), f"Consent.provision.purpose[{i}].code", required=True)
                if code is not None:
                    scope.append(code)
        if not scope:
            r.fail(
                "Consent.provision.purpose", f"needs at least one coding with system {CONSENT_SCOPE_SYSTEM}"
            )
        consent["scope"] = scope
    category = r.first(c.get("category"), "Consent.category", required=True)
    coding = (
        None
        if category is None
        else r.first(category.get("coding"), "Consent.category[0].coding", required=True)
    )
    if coding is not None:
        if coding.get("system") != CONSENT_METHOD_SYSTEM:
            r.fail("Consent.category[0].coding[0].system", f"must be {CONSENT_METHOD_SYSTEM}")
        method = r.text(coding.get("code"), "Consent.category[0].coding[0].code", required=True)
        if method is not None and method not in ("written", "electronic", "verbal"):
            r.fail("Consent.category[0].coding[0].code", "must be written, electronic or verbal")
        elif method is not None:
            consent["method"] = method
    body["consent"] = consent


def _task(r: _Reader, t: dict[str, Any], patient_url: str, request_url: str) -> str:
    if t.get("status") != "requested":
        r.fail("Task.status", "must be 'requested'")
    if t.get("intent") != "order":
        r.fail("Task.intent", "must be 'order'")
    _reference(r, t.get("focus"), "Task.focus", request_url, "ServiceRequest")
    _reference(r, t.get("for"), "Task.for", patient_url, "Patient")
    identifier = r.first(t.get("identifier"), "Task.identifier", required=True)
    value = (
        None
        if identifier is None
        else r.text(identifier.get("value"), "Task.identifier[0].value", required=True)
    )
    if value is not None and not 1 <= len(value) <= MAX_IDENTIFIER:
        r.fail("Task.identifier[0].value", f"must be 1-{MAX_IDENTIFIER} characters")
        return ""
    return value or ""


def parse_bundle(doc: Any) -> Parsed:
    """The transaction Bundle as the referral body it stands for, or BundleInvalid listing every issue."""
    r = _Reader()
    bundle = r.obj(doc, "Bundle", required=True)
    if bundle is None:
        raise BundleInvalid(r.issues)
    if bundle.get("resourceType") != "Bundle":
        raise BundleInvalid([Issue("Bundle.resourceType", "must be 'Bundle'")])
    if bundle.get("type") != "transaction":
        r.fail("Bundle.type", "must be 'transaction'")
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for i, entry in enumerate(r.arr(bundle.get("entry"), "Bundle.entry", required=True)):
        e = r.obj(entry, f"Bundle.entry[{i}]")
        if e is None:
            continue
        resource = r.obj(e.get("resource"), f"Bundle.entry[{i}].resource", required=True)
        full_url = r.text(e.get("fullUrl"), f"Bundle.entry[{i}].fullUrl", required=True)
        if resource is None or full_url is None:
            continue
        kind = resource.get("resourceType")
        if kind not in _KINDS:
            r.fail(f"Bundle.entry[{i}].resource.resourceType", f"must be one of {', '.join(_KINDS)}")
            continue
        if kind in found:
            r.fail(f"Bundle.entry[{i}]", f"more than one {kind}")
            continue
        request = e.get("request")
        if isinstance(request, dict) and request.get("method") not in (None, "POST"):
            r.fail(f"Bundle.entry[{i}].request.method", "must be POST")
        found[str(kind)] = (full_url, resource)
    for kind in _KINDS:
        if kind not in found:
            r.fail("Bundle.entry", f"needs one {kind}")
    if r.issues and len(found) < len(_KINDS):
        raise BundleInvalid(r.issues)
    body: dict[str, Any] = {}
    patient_url, patient = found["Patient"]
    request_url, service_request = found["ServiceRequest"]
    _patient(r, patient, body)
    _service_request(r, service_request, body)
    _reference(r, service_request.get("subject"), "ServiceRequest.subject", patient_url, "Patient")
    _consent(r, found["Consent"][1], body)
    if "patient" in found["Consent"][1]:
        _reference(r, found["Consent"][1]["patient"], "Consent.patient", patient_url, "Patient")
    identifier = _task(r, found["Task"][1], patient_url, request_url)
    if r.issues:
        raise BundleInvalid(r.issues)
    return Parsed(body, identifier)


def task_resource(row: Any, identifier: str | None) -> dict[str, Any]:
    """A referral as the partner's Task: status per the contract's mapping, routing facts only."""
    status = str(row["status"])
    task: dict[str, Any] = {
        "resourceType": "Task",
        "id": str(row["id"]),
        "meta": {"lastUpdated": row["updated_at"].isoformat()},
        "status": FHIR_TASK_STATUS.get(status, "requested"),
        "businessStatus": {"coding": [{"system": STATUS_SYSTEM, "code": status}], "text": status},
        "intent": "order",
        "priority": str(row["urgency"]),
        "focus": {"identifier": {"system": REFERRAL_SYSTEM, "value": str(row["id"])}},
        "authoredOn": row["received_at"].isoformat(),
        "lastModified": row["updated_at"].isoformat(),
    }
    if identifier:
        task["identifier"] = [{"system": TASK_IDENTIFIER_SYSTEM, "value": identifier}]
    if status == "unroutable" and row["unroutable_reason"]:
        task["statusReason"] = {"coding": [{"system": REASON_SYSTEM, "code": str(row["unroutable_reason"])}]}
    return task
