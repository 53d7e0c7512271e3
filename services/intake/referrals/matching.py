"""One youth across referrals, pure: keyed blind indexes of a youth's details and the match score.

At intake the partner's plaintext is at hand (it is sealed moments later), so each referral stores a few
HMAC tokens of normalised details: the exact youth key, the date of birth, the phone's last seven digits,
phonetic codes of the first and last names, and the first name's trigrams. Tokens of one kind are equal
exactly when the normalised details are, and reveal nothing without the server's key. A new referral's
candidates are the referrals sharing a blocking token (exact key, date of birth, phone); ``score`` says
whether the shared tokens make them probably the same youth. Nothing here decrypts PII at rest.
"""

from __future__ import annotations

import hmac
import re
from datetime import date

import jellyfish
import msgspec

from shared.youthkey import normalise_name

__all__ = [
    "BLOCKING_KINDS",
    "PROBABLE",
    "Match",
    "Token",
    "blind_tokens",
    "name_trigrams",
    "phone_digits",
    "score",
]

_DOMAIN = b"refnet/youth-match/v1/"
# Tokens of these kinds select candidates; the others only add evidence.
BLOCKING_KINDS = ("exact", "dob", "phone")
# The score from which two referrals are shown to staff as "possibly the same youth".
PROBABLE = 0.6
_WEIGHTS = {"dob": 0.35, "phone": 0.35, "first_name": 0.3, "last_name": 0.1}
_PHONE_DIGITS = 7
_NOT_ASCII_DIGIT = re.compile(r"[^0-9]+")


class Token(msgspec.Struct, frozen=True):
    kind: str
    value: bytes


class Match(msgspec.Struct, frozen=True):
    score: float
    reasons: tuple[str, ...]


def _mac(secret: bytes, kind: str, text: str) -> bytes:
    # hmac.digest: the one-shot C path, several times faster than hmac.new(...).digest() (about eleven
    # tokens per referral).
    return hmac.digest(secret, _DOMAIN + kind.encode() + b"\x00" + text.encode(), "sha256")


def phone_digits(phone: str | None) -> str:
    """The last seven digits (the local number): area codes and formatting vary between partners."""
    digits = _NOT_ASCII_DIGIT.sub("", phone or "")
    return digits[-_PHONE_DIGITS:] if len(digits) >= _PHONE_DIGITS else ""


def name_trigrams(name: str) -> frozenset[str]:
    """pg_trgm's trigrams of a normalised name (two spaces before, one after)."""
    if not name:
        return frozenset()
    padded = f"  {name} "
    return frozenset(padded[i : i + 3] for i in range(len(padded) - 2))


def blind_tokens(
    secret: bytes,
    first_name: str,
    last_name: str | None,
    date_of_birth: date,
    phone: str | None,
    exact_key: bytes | None,
) -> list[Token]:
    """The referral's tokens (none without a secret). ``exact_key`` is the youth key already computed."""
    if not secret:
        return []
    first, last = normalise_name(first_name), normalise_name(last_name)
    tokens: list[Token] = [Token("dob", _mac(secret, "dob", date_of_birth.isoformat()))]
    if exact_key is not None:
        tokens.append(Token("exact", _mac(secret, "exact", exact_key.hex())))
    digits = phone_digits(phone)
    if digits:
        tokens.append(Token("phone", _mac(secret, "phone", digits)))
    if first:
        tokens.append(Token("first", _mac(secret, "first", jellyfish.metaphone(first))))
        tokens.extend(Token("first_tri", _mac(secret, "first_tri", t)) for t in sorted(name_trigrams(first)))
    if last:
        tokens.append(Token("last", _mac(secret, "last", jellyfish.metaphone(last))))
    return tokens


def score(shared: frozenset[str], shared_tri: int, mine_tri: int, their_tri: int) -> Match | None:
    """Whether a candidate sharing the token kinds ``shared`` (and ``shared_tri`` of the first name's
    trigrams, of ``mine_tri`` and ``their_tri``) is probably the same youth; None when not.

    The same name and birth date (the exact key) is certain. Otherwise the date of birth and the phone
    count most, the first name by sound or spelling (trigram Jaccard similarity) next, the last name
    least (it changes, and siblings share it): a birth date with a similar first name, or a birth date and
    a phone, are enough; a name alone never is.
    """
    if "exact" in shared:
        return Match(1.0, ("exact",))
    union = mine_tri + their_tri - shared_tri
    similarity = 1.0 if "first" in shared else (shared_tri / union if union > 0 else 0.0)
    parts = {
        "dob": 1.0 if "dob" in shared else 0.0,
        "phone": 1.0 if "phone" in shared else 0.0,
        "first_name": similarity,
        "last_name": 1.0 if "last" in shared else 0.0,
    }
    total = round(sum(_WEIGHTS[k] * v for k, v in parts.items()), 4)
    if total < PROBABLE:
        return None
    return Match(min(total, 0.99), tuple(k for k, v in parts.items() if v >= 0.5))
