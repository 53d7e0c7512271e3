"""Envelope encryption of PII: round trips, binding to the referral, tamper detection, key rotation."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.crypto import KeyRing, Sealed, generate_master_key

K1 = generate_master_key()
K2 = generate_master_key()
AAD = b"6f1c2f0e-2b59-4d0e-9a57-3f8e7f0a1b2c"
PLAINTEXT = b'{"first_name": "Zyxwandra", "date_of_birth": "2010-04-01"}'


def ring(current: str = "k1", **keys: str) -> KeyRing:
    return KeyRing(keys or {"k1": K1}, current)


def _flip(data: bytes, index: int) -> bytes:
    b = bytearray(data)
    b[index % len(b)] ^= 0x01
    return bytes(b)


def test_generate_master_key_is_32_random_bytes() -> None:
    assert len(base64.b64decode(K1, validate=True)) == 32
    assert K1 != K2


def test_seal_open_round_trip() -> None:
    r = ring()
    sealed = r.seal(PLAINTEXT, AAD)
    assert sealed.key_id == "k1"
    assert PLAINTEXT not in sealed.ciphertext
    assert r.open(sealed, AAD) == PLAINTEXT


def test_another_ring_with_the_same_key_opens() -> None:
    sealed = ring().seal(PLAINTEXT, AAD)
    assert KeyRing({"k1": K1}, "k1").open(sealed, AAD) == PLAINTEXT


def test_empty_plaintext() -> None:
    r = ring()
    assert r.open(r.seal(b"", AAD), AAD) == b""


def test_each_seal_uses_a_fresh_data_key_and_nonce() -> None:
    r = ring()
    a, b = r.seal(PLAINTEXT, AAD), r.seal(PLAINTEXT, AAD)
    assert a.nonce != b.nonce
    assert a.wrapped_key != b.wrapped_key
    assert a.ciphertext != b.ciphertext
    assert len(a.nonce) == 12
    assert len(a.wrapped_key) == 12 + 32 + 16  # wrap nonce + data key + GCM tag


def test_wrong_associated_data_fails() -> None:
    r = ring()
    sealed = r.seal(PLAINTEXT, AAD)
    with pytest.raises(InvalidTag):
        r.open(sealed, b"another-referral-id")
    with pytest.raises(InvalidTag):
        r.open(sealed, b"")


def test_ciphertext_moved_to_another_referral_fails() -> None:
    """A row's ciphertext pasted next to another referral's key must not open."""
    r = ring()
    a = r.seal(PLAINTEXT, b"ref-a")
    b = r.seal(b"other", b"ref-b")
    frankenstein = Sealed(b.key_id, b.wrapped_key, a.nonce, a.ciphertext)
    with pytest.raises(InvalidTag):
        r.open(frankenstein, b"ref-b")


@pytest.mark.parametrize("part", ["ciphertext", "nonce", "wrapped_key"])
@pytest.mark.parametrize("index", [0, 5, -1])
def test_tampering_fails(part: str, index: int) -> None:
    r = ring()
    sealed = r.seal(PLAINTEXT, AAD)
    fields: dict[str, Any] = {
        "key_id": sealed.key_id,
        "wrapped_key": sealed.wrapped_key,
        "nonce": sealed.nonce,
        "ciphertext": sealed.ciphertext,
    }
    fields[part] = _flip(fields[part], index)
    with pytest.raises(InvalidTag):
        r.open(Sealed(**fields), AAD)


def test_truncated_ciphertext_fails() -> None:
    r = ring()
    s = r.seal(PLAINTEXT, AAD)
    with pytest.raises(InvalidTag):
        r.open(Sealed(s.key_id, s.wrapped_key, s.nonce, s.ciphertext[:-1]), AAD)


def test_wrong_master_key_fails() -> None:
    sealed = ring().seal(PLAINTEXT, AAD)
    with pytest.raises(InvalidTag):
        KeyRing({"k1": K2}, "k1").open(sealed, AAD)


def test_unknown_key_id_cannot_open() -> None:
    sealed = ring().seal(PLAINTEXT, AAD)
    with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal is fine; a plaintext is not
        KeyRing({"k2": K2}, "k2").open(sealed, AAD)


def test_rewrap_under_a_new_current_key() -> None:
    old = KeyRing({"k1": K1}, "k1")
    sealed = old.seal(PLAINTEXT, AAD)

    rotated = KeyRing({"k1": K1, "k2": K2}, "k2")
    # Before rewrap the rotated ring still opens old rows.
    assert rotated.open(sealed, AAD) == PLAINTEXT
    new_id, new_wrapped = rotated.rewrap(sealed.key_id, sealed.wrapped_key, AAD)
    assert new_id == "k2"
    assert new_wrapped != sealed.wrapped_key
    resealed = Sealed(new_id, new_wrapped, sealed.nonce, sealed.ciphertext)
    assert rotated.open(resealed, AAD) == PLAINTEXT
    # The old master key can now be retired: k2 alone opens the row.
    assert KeyRing({"k2": K2}, "k2").open(resealed, AAD) == PLAINTEXT
    # And k1 alone no longer can.
    with pytest.raises(Exception):  # noqa: B017, PT011
        KeyRing({"k1": K1}, "k1").open(resealed, AAD)


def test_rewrap_keeps_the_referral_binding() -> None:
    rotated = KeyRing({"k1": K1, "k2": K2}, "k2")
    sealed = KeyRing({"k1": K1}, "k1").seal(PLAINTEXT, AAD)
    new_id, new_wrapped = rotated.rewrap(sealed.key_id, sealed.wrapped_key, AAD)
    with pytest.raises(InvalidTag):
        rotated.open(Sealed(new_id, new_wrapped, sealed.nonce, sealed.ciphertext), b"other")
    with pytest.raises(InvalidTag):
        rotated.rewrap(sealed.key_id, sealed.wrapped_key, b"other")


def test_seal_uses_the_current_key() -> None:
    rotated = KeyRing({"k1": K1, "k2": K2}, "k2")
    assert rotated.seal(PLAINTEXT, AAD).key_id == "k2"
    assert rotated.current == "k2"


@pytest.mark.parametrize(
    ("keys", "current", "match"),
    [
        ({"k1": "not base64!!"}, "k1", "not valid base64"),
        ({"k1": base64.b64encode(os.urandom(16)).decode()}, "k1", "32 bytes"),
        ({"k1": base64.b64encode(os.urandom(31)).decode()}, "k1", "32 bytes"),
        ({"k1": base64.b64encode(os.urandom(33)).decode()}, "k1", "32 bytes"),
        ({"k1": ""}, "k1", "32 bytes"),
        ({"k1": K1}, "k2", "has no key"),
        ({}, "k1", "has no key"),
        ({"k1": K1, "k2": "AAAA"}, "k1", "'k2'"),  # a bad old key is refused too
    ],
)
def test_invalid_keys_rejected(keys: dict[str, str], current: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        KeyRing(keys, current)


def test_error_message_does_not_echo_the_key() -> None:
    bad = base64.b64encode(b"x" * 16).decode()
    with pytest.raises(ValueError, match="32 bytes") as info:
        KeyRing({"k1": bad}, "k1")
    assert bad not in str(info.value)


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=2048), st.binary(max_size=64))
def test_round_trip_property(plaintext: bytes, aad: bytes) -> None:
    r = KeyRing({"k1": K1, "k2": K2}, "k2")
    assert r.open(r.seal(plaintext, aad), aad) == plaintext
