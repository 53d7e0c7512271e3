"""Sign-in and case manager profile bodies and views."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from services.intake.core.schemas import Input
from services.intake.staff import accounts, roster
from shared.codes import NeedCode

__all__ = [
    "CaseManagerCreated",
    "CaseManagerIn",
    "CaseManagerPage",
    "CaseManagerPatch",
    "PasswordChangeIn",
    "PasswordOut",
    "StaffCreated",
    "StaffIn",
    "StaffPage",
    "StaffPatch",
    "TokenRequest",
    "TokenResponse",
]


class TokenRequest(Input):
    email: Annotated[str, Meta(min_length=3, max_length=320)]
    password: Annotated[str, Meta(min_length=1, max_length=1024)]


class TokenResponse(msgspec.Struct):
    access_token: str
    expires_in: int
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    # A one-time password: this token may only change it (POST /v1/auth/password).
    password_change_required: bool = False


class PasswordChangeIn(Input):
    current_password: Annotated[str, Meta(min_length=1, max_length=1024)]
    new_password: Annotated[str, Meta(min_length=1, max_length=1024)]


StaffRoleName = Literal["admin", "supervisor", "case_manager", "evaluator", "intake_staff", "partner_user"]


class StaffIn(Input):
    email: roster.Email
    role: StaffRoleName
    # Optional (the command line's --name is): then the account shows its email.
    name: Annotated[str, Meta(max_length=200, pattern=r"^[^\x00]*$")] = ""
    regions: Annotated[list[Annotated[str, Meta(max_length=64)]], Meta(max_length=20)] = msgspec.field(
        default_factory=list
    )
    partner_id: Annotated[str, Meta(max_length=64)] | None = None


class StaffPatch(Input):
    active: bool


class StaffCreated(msgspec.Struct, kw_only=True):
    id: str
    email: str
    role: str
    active: bool
    password: str
    name: str = ""
    regions: list[str] = msgspec.field(default_factory=list)
    partner_id: str | None = None


class StaffPage(msgspec.Struct):
    items: list[accounts.Account]


class PasswordOut(msgspec.Struct):
    password: str


class CaseManagerIn(Input):
    email: roster.Email
    name: roster.Name
    regions: Annotated[list[str], Meta(min_length=1, max_length=20)]
    needs: Annotated[list[NeedCode], Meta(min_length=1, max_length=13)]
    capacity: Annotated[int, Meta(ge=0, le=1000)]
    languages: Annotated[list[roster.Language], Meta(min_length=1, max_length=20)] = msgspec.field(
        default_factory=lambda: ["en"]
    )
    status: roster.CaseManagerStatus = "active"
    away_until: date | None = None
    specialisms: Annotated[list[roster.Specialism], Meta(max_length=4)] = msgspec.field(default_factory=list)
    # Omitted: one is generated and shown once in the response.
    password: Annotated[str, Meta(min_length=12, max_length=1024)] | None = None


class CaseManagerPatch(Input):
    """Only the fields given change. Supervisors may change load, availability and skills, not identity."""

    email: roster.Email | None = None
    name: roster.Name | None = None
    regions: Annotated[list[str], Meta(min_length=1, max_length=20)] | None = None
    needs: Annotated[list[NeedCode], Meta(min_length=1, max_length=13)] | None = None
    capacity: Annotated[int, Meta(ge=0, le=1000)] | None = None
    languages: Annotated[list[roster.Language], Meta(min_length=1, max_length=20)] | None = None
    status: roster.CaseManagerStatus | None = None
    # null clears it; absent leaves it.
    away_until: date | msgspec.UnsetType | None = msgspec.UNSET
    specialisms: Annotated[list[roster.Specialism], Meta(max_length=4)] | None = None


class CaseManagerCreated(roster.ProfileView, kw_only=True):
    password: str | None = None


class CaseManagerPage(msgspec.Struct):
    items: list[roster.ProfileView]
