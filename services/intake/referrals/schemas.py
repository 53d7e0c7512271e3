"""The referral body a partner posts (strict: unknown fields refused) and the status view callers read."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.intake.core.schemas import END as _END
from services.intake.core.schemas import AwareDatetime, Input
from shared.codes import (
    EducationLevel,
    NeedCode,
    PriorServices,
    ReferralSetting,
    ReferralStatus,
    SocioeconomicStatus,
    Urgency,
)

__all__ = [
    "Consent",
    "ContactPreferences",
    "IntakeAttributes",
    "Location",
    "ReferralIn",
    "ReferralPage",
    "ReferralView",
    "Youth",
]


class Youth(Input):
    # At least one visible character: a whitespace-only name is a missing name.
    first_name: Annotated[
        str, Meta(min_length=1, max_length=100, pattern=r"\S", extra={"invalid": "must not be blank"})
    ]
    date_of_birth: date
    last_name: Annotated[str, Meta(max_length=100)] | None = None
    phone: (
        Annotated[
            str,
            Meta(
                max_length=32,
                pattern=r"^[0-9+()\-. ]*" + _END,
                description="Digits, spaces and + ( ) - . only.",
                extra={"invalid": "may hold only digits, spaces and the characters + ( ) - ."},
            ),
        ]
        | None
    ) = None
    gender: Annotated[str, Meta(max_length=64)] | None = None
    # The youth asked not to be contacted (by the network or the referring partner's systems).
    # UNSET when absent, so bodies without it encode, hash (Idempotency-Key) and seal as before.
    do_not_contact: bool | msgspec.UnsetType = msgspec.UNSET


class Location(Input):
    # ASCII digits only: `\d` would also accept other scripts' digits (e.g. fullwidth), which no USPS ZIP has.
    zip: (
        Annotated[
            str,
            Meta(
                pattern=r"^[0-9]{5}(-[0-9]{4})?" + _END,
                description="A US ZIP code: five digits, or ZIP+4 (90011 or 90011-1234).",
                extra={"invalid": "must be a US ZIP code: five digits, or ZIP+4 (e.g. 90011 or 90011-1234)"},
            ),
        ]
        | None
    ) = None
    lat: Annotated[float, Meta(ge=-90, le=90)] | None = None
    lon: Annotated[float, Meta(ge=-180, le=180)] | None = None


class Consent(Input):
    obtained_at: AwareDatetime
    expires_at: AwareDatetime
    method: Literal["written", "electronic", "verbal"]
    scope: Annotated[
        list[
            Annotated[
                str,
                Meta(
                    pattern=r"^[a-z_]{1,64}" + _END,
                    extra={"invalid": "must be a scope code (lower-case letters and underscores)"},
                ),
            ]
        ],
        Meta(min_length=1, max_length=20),
    ]


class IntakeAttributes(Input):
    referral_setting: ReferralSetting | None = None
    prior_services: PriorServices | None = None
    age_first_exploited: Annotated[int, Meta(ge=0, le=24)] | None = None
    education_level: EducationLevel | None = None
    socioeconomic_status: SocioeconomicStatus | None = None
    prior_arrests: Annotated[int, Meta(ge=0, le=999)] | None = None
    foster_care_history: bool | None = None


class ContactPreferences(Input):
    """How the youth may safely be contacted (issue 18). ``safe_times`` and ``notes`` are PII (sealed)."""

    safe_channel: Literal["phone", "sms", "email", "in_person", "through_referrer"] | None = None
    safe_times: Annotated[str, Meta(max_length=200)] | None = None
    voicemail_ok: bool | None = None
    notes: Annotated[str, Meta(max_length=2000)] | None = None


class ReferralIn(Input):
    youth: Youth
    location: Location
    needs: Annotated[list[NeedCode], Meta(min_length=1, max_length=13)]
    consent: Consent
    language: Annotated[
        str,
        Meta(
            pattern=r"^[a-z]{2}" + _END,
            description="The youth's language: an ISO 639-1 code in lower case.",
            extra={"invalid": 'must be a two-letter ISO 639-1 language code in lower case, e.g. "es"'},
        ),
    ] = "en"
    urgency: Urgency = "routine"
    intake: IntakeAttributes | None = None
    notes: Annotated[str, Meta(max_length=10_000)] | None = None
    # UNSET when absent, so bodies without it encode, hash (Idempotency-Key) and seal as before.
    contact: ContactPreferences | msgspec.UnsetType | None = msgspec.UNSET


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
