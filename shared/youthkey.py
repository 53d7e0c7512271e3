"""The pseudonymous youth key: an HMAC of a youth's normalised name and birth date, for routing continuity."""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import unicodedata
from datetime import date

__all__ = ["normalise_name", "youth_key", "youth_key_secret"]

_DOMAIN = b"refnet/youth-key/v1"
_NOT_ASCII_LETTER = re.compile(r"[^A-Za-z]+")


def normalise_name(name: str | None) -> str:
    """Letters only, without accents, case-folded: 'José  María-Núñez' and 'jose maria nunez' agree."""
    if not name:
        return ""
    if name.isascii():
        # The same result, several times faster, for the common case (every referral normalises two
        # names twice): NFKD leaves ASCII alone, and its letters are exactly A-Z and a-z.
        return _NOT_ASCII_LETTER.sub("", name).lower()
    decomposed = unicodedata.normalize("NFKD", name)
    return "".join(ch for ch in decomposed if unicodedata.category(ch).startswith("L")).casefold()


@functools.cache
def youth_key_secret(youth_key_secret: str, secret_key: str) -> bytes:
    """The HMAC key: REFNET_YOUTH_KEY_SECRET, else one derived from REFNET_SECRET_KEY (domain-separated)."""
    if youth_key_secret:
        return hashlib.sha256(_DOMAIN + b"\x00" + youth_key_secret.encode()).digest()
    return hmac.new(secret_key.encode(), _DOMAIN, hashlib.sha256).digest()


def youth_key(secret: bytes, first_name: str, last_name: str | None, date_of_birth: date) -> bytes | None:
    """Equal for the same youth referred twice (spelling of accents, case and spacing aside); without the
    secret it reveals nothing and cannot be tested against guesses. None when there is nothing to key on."""
    first = normalise_name(first_name)
    if not first or not secret:
        return None
    message = "\x1f".join((first, normalise_name(last_name), date_of_birth.isoformat())).encode()
    return hmac.digest(secret, message, "sha256")
