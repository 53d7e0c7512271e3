"""msgspec Structs for the HTTP API: strict inputs (unknown fields refused) and response views."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from shared.codes import (
    AssignmentState,
    EducationLevel,
    NeedCode,
    PriorServices,
    ReferralSetting,
    ReferralStatus,
    SocioeconomicStatus,
    Urgency,
)

ShortText = Annotated[str, Meta(min_length=1, max_length=200)]
# Python's `$` also matches before a final newline, so "90011\n" would pass `^...$`; `(?!\n)$` closes
# that gap and still means plain `$` to the ECMA-262 regexes that read the OpenAPI schema.
_END = r"(?!\n)$"
AwareDatetime = Annotated[datetime, Meta(tz=True)]


class Input(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: an unknown field is a client error, never silently dropped."""


class Youth(Input):
    # At least one visible character: a whitespace-only name is a missing name.
    first_name: Annotated[str, Meta(min_length=1, max_length=100, pattern=r"\S")]
    date_of_birth: date
    last_name: Annotated[str, Meta(max_length=100)] | None = None
    phone: Annotated[str, Meta(max_length=32, pattern=r"^[0-9+()\-. ]*" + _END)] | None = None
    gender: Annotated[str, Meta(max_length=64)] | None = None
    # The youth asked not to be contacted (by the network or the referring partner's systems).
    # UNSET when absent, so bodies without it encode, hash (Idempotency-Key) and seal as before.
    do_not_contact: bool | msgspec.UnsetType = msgspec.UNSET


class Location(Input):
    # ASCII digits only: `\d` would also accept other scripts' digits (e.g. fullwidth), which no USPS ZIP has.
    zip: Annotated[str, Meta(pattern=r"^[0-9]{5}(-[0-9]{4})?" + _END)] | None = None
    lat: Annotated[float, Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, Meta(ge=-180, le=180)] | None = None


class Consent(Input):
    obtained_at: AwareDatetime
    expires_at: AwareDatetime
    method: Literal["written", "electronic", "verbal"]
    scope: Annotated[
        list[Annotated[str, Meta(pattern=r"^[a-z_]{1,64}" + _END)]], Meta(min_length=1, max_length=20)
    ]


class IntakeAttributes(Input):
    referral_setting: ReferralSetting | None = None
    prior_services: PriorServices | None = None
    age_first_exploited: Annotated[int, Meta(ge=0, le=24)] | None = None
    education_level: EducationLevel | None = None
    socioeconomic_status: SocioeconomicStatus | None = None
    prior_arrests: Annotated[int, Meta(ge=0, le=999)] | None = None
    foster_care_history: bool | None = None


class ReferralIn(Input):
    youth: Youth
    location: Location
    needs: Annotated[list[NeedCode], Meta(min_length=1, max_length=13)]
    consent: Consent
    language: Annotated[str, Meta(pattern=r"^[a-z]{2}" + _END)] = "en"
    urgency: Urgency = "routine"
    intake: IntakeAttributes | None = None
    notes: Annotated[str, Meta(max_length=10_000)] | None = None


class ReferralView(msgspec.Struct, omit_defaults=True, kw_only=True):
    """What a partner may see of a referral: routing facts and dates, never PII or case details."""

    id: str
    status: ReferralStatus
    region: str | None
    needs: list[str]
    urgency: str
    received_at: datetime
    updated_at: datetime
    assigned_at: datetime | None = None
    accepted_at: datetime | None = None
    closed_at: datetime | None = None
    outcome: str | None = None
    unroutable_reason: str | None = None
    # Closed loop (issue 5): first contact, and when closed the reason code (never notes or services).
    engaged_at: datetime | None = None
    close_reason: str | None = None
    do_not_contact: bool = False


class ReferralPage(msgspec.Struct):
    items: list[ReferralView]
    next_cursor: str | None


class TokenRequest(Input):
    email: Annotated[str, Meta(min_length=3, max_length=320)]
    password: Annotated[str, Meta(min_length=1, max_length=1024)]


class TokenResponse(msgspec.Struct):
    access_token: str
    expires_in: int
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret


class AssignmentView(msgspec.Struct, omit_defaults=True, kw_only=True):
    id: str
    referral_id: str
    state: AssignmentState
    offered_at: datetime
    respond_by: datetime
    responded_at: datetime | None = None
    region: str | None = None
    needs: list[str] = msgspec.field(default_factory=list)
    urgency: str | None = None


class AssignmentPage(msgspec.Struct):
    items: list[AssignmentView]


class BreakGlassIn(Input):
    # Kept in the audit log: say why (a ticket or incident number), not who the youth is.
    reason: Annotated[str, Meta(min_length=10, max_length=500)]


class PiiView(msgspec.Struct, kw_only=True):
    referral_id: str
    youth: dict[str, object]
    location: dict[str, object]
    notes: str | None
    consent: dict[str, object]


class WithdrawIn(Input):
    # Free text may describe the youth: it is not stored; only that a withdrawal happened.
    note: Annotated[str, Meta(max_length=1000)] | None = None


class DeclineIn(Input):
    reason: Annotated[str, Meta(min_length=1, max_length=1000)]


class NotificationView(msgspec.Struct, kw_only=True):
    id: int
    kind: str
    referral_id: str | None
    assignment_id: str | None
    created_at: datetime
    read_at: datetime | None
    data: dict[str, object]


class NotificationPage(msgspec.Struct):
    items: list[NotificationView]
