"""Credential primitives every service and tool shares: argon2 password hashes and partner API keys."""

from __future__ import annotations

import hashlib
import secrets

import argon2

__all__ = [
    "API_KEY_PREFIX",
    "hash_api_key",
    "hash_password",
    "new_api_key",
    "new_password",
    "verify_password",
]

API_KEY_PREFIX = "rnk_"

_hasher = argon2.PasswordHasher()
# Verifying against a real hash when the email is unknown keeps timing from revealing accounts.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True only for a stored hash that matches; an unknown account (None) costs the same time."""
    try:
        return _hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
        return False


def new_password() -> str:
    """A generated one-time password (about 128 bits)."""
    return secrets.token_urlsafe(16)


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> bytes:
    # Keys carry 256 random bits: a fast hash is enough, and a slow one would tax every request.
    return hashlib.sha256(key.encode()).digest()
