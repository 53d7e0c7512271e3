"""Standard Webhooks signing: whsec_ secrets, v1 HMAC-SHA256 signatures, and secrets sealed at rest."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence

import msgspec

from shared.crypto import KeyRing, Sealed

__all__ = [
    "SECRET_PREFIX",
    "new_secret",
    "open_secret",
    "seal_secret",
    "sign",
    "signature_header",
    "webhook_headers",
    "webhook_id",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret
_SECRET_BYTES = 32


def webhook_id(delivery_id: uuid.UUID | str) -> str:
    """The ``webhook-id`` of a delivery: the same on every attempt and replay, so receivers can dedupe."""
    return "msg_" + uuid.UUID(str(delivery_id)).hex


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(_SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a whsec_ secret") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """One signature per active secret, space-separated: receivers accept any that verifies."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_)


def webhook_headers(secrets_: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets_, msg_id, timestamp, body),
        "content-type": "application/json",
    }


_sealed_encoder = msgspec.msgpack.Encoder()
_sealed_decoder = msgspec.msgpack.Decoder(Sealed)


def seal_secret(keyring: KeyRing, endpoint_id: str, secret: str) -> bytes:
    """Encrypt a secret for storage, bound to its endpoint (a sealed secret copied to another row fails)."""
    return _sealed_encoder.encode(keyring.seal(secret.encode(), endpoint_id.encode()))


def open_secret(keyring: KeyRing, endpoint_id: str, sealed: bytes) -> str:
    return keyring.open(_sealed_decoder.decode(sealed), endpoint_id.encode()).decode()
