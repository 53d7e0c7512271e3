"""The base of every request body (unknown fields refused) and the field types the bodies share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = ["END", "AwareDatetime", "Input"]

# Python's `$` also matches before a final newline, so "90011\n" would pass `^...$`; `(?!\n)$` closes
# that gap and still means plain `$` to the ECMA-262 regexes that read the OpenAPI schema.
END = r"(?!\n)$"
AwareDatetime = Annotated[datetime, Meta(tz=True)]


class Input(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every request body: an unknown field is a client error, never silently dropped."""
