"""Envelope encryption of PII: a random AES-256-GCM data key per referral, wrapped by a master key."""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KeyRing",
    "KeyringDoc",
    "Keys",
    "Sealed",
    "UnknownKeyError",
    "generate_master_key",
    "load_keyring",
    "read_keyring_file",
    "write_keyring_file",
]


def generate_master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


class KeyringDoc(msgspec.Struct, forbid_unknown_fields=True):
    current: str
    keys: dict[str, str]


def read_keyring_file(path: str | os.PathLike[str]) -> KeyringDoc:
    return msgspec.json.decode(Path(path).read_bytes(), type=KeyringDoc)


def write_keyring_file(path: str | os.PathLike[str], doc: KeyringDoc) -> None:
    """Atomically replace the keyring file (0600): a crash leaves the old or the new, never half."""
    target = Path(path)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(msgspec.json.format(msgspec.json.encode(doc)))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)


def load_keyring(keyring_file: str, single_key: str, single_key_id: str) -> KeyRing:
    """The configured master keys: a keyring file when given, else one key from the environment."""
    if keyring_file:
        doc = read_keyring_file(keyring_file)
        return KeyRing(doc.keys, doc.current)
    if not single_key:
        raise ValueError("no PII master key configured (REFNET_PII_KEYRING_FILE or REFNET_PII_MASTER_KEY)")
    return KeyRing({single_key_id: single_key}, single_key_id)


class UnknownKeyError(LookupError):
    """A data key was wrapped by a master key this process does not have."""


class Sealed(msgspec.Struct, frozen=True):
    key_id: str
    wrapped_key: bytes
    nonce: bytes
    ciphertext: bytes


class KeyRing:
    """Master keys by id; ``current`` wraps new data keys, older ids still unwrap (rotation)."""

    def __init__(self, keys: dict[str, str], current: str) -> None:
        self._keys: dict[str, AESGCM] = {}
        for key_id, b64 in keys.items():
            try:
                raw = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"PII master key {key_id!r} is not valid base64") from None
            if len(raw) != 32:
                raise ValueError(f"PII master key {key_id!r} must be 32 bytes (AES-256)")
            self._keys[key_id] = AESGCM(raw)
        if current not in self._keys:
            raise ValueError(f"current PII key id {current!r} has no key")
        self.current = current

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def seal(self, plaintext: bytes, associated: bytes) -> Sealed:
        """Encrypt ``plaintext`` under a fresh data key bound to ``associated`` (the referral id)."""
        data_key = AESGCM.generate_key(bit_length=256)
        wrap_nonce = os.urandom(12)
        wrapped = wrap_nonce + self._keys[self.current].encrypt(wrap_nonce, data_key, associated)
        nonce = os.urandom(12)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, associated)
        return Sealed(self.current, wrapped, nonce, ciphertext)

    def unwrap(self, key_id: str, wrapped: bytes, associated: bytes) -> bytes:
        master = self._keys.get(key_id)
        if master is None:
            raise UnknownKeyError(f"no PII master key with id {key_id!r} is configured")
        return master.decrypt(wrapped[:12], wrapped[12:], associated)

    def open(self, sealed: Sealed, associated: bytes) -> bytes:
        data_key = self.unwrap(sealed.key_id, sealed.wrapped_key, associated)
        return AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, associated)

    def rewrap(self, key_id: str, wrapped: bytes, associated: bytes) -> tuple[str, bytes]:
        data_key = self.unwrap(key_id, wrapped, associated)
        nonce = os.urandom(12)
        return self.current, nonce + self._keys[self.current].encrypt(nonce, data_key, associated)


class Keys:
    """The configured keyring, re-read when its file changes (a rotation wrote a new current key or
    destroyed an old one) and once more when a record names a key this process does not hold yet."""

    def __init__(self, keyring_file: str, single_key: str, single_key_id: str) -> None:
        self._source = (keyring_file, single_key, single_key_id)
        self._stamp = self._file_stamp()
        self._ring: KeyRing = load_keyring(*self._source)

    def _file_stamp(self) -> tuple[int, int] | None:
        if not self._source[0]:
            return None
        try:
            st = os.stat(self._source[0])
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino

    @property
    def ring(self) -> KeyRing:
        """The current keyring: one stat() per use, so new data keys are wrapped by the newest epoch."""
        stamp = self._file_stamp()
        if stamp != self._stamp and stamp is not None:
            self._ring = load_keyring(*self._source)
            self._stamp = stamp
        return self._ring

    def open(self, sealed: Sealed, associated: bytes) -> bytes:
        try:
            return self.ring.open(sealed, associated)
        except UnknownKeyError:
            self._ring = load_keyring(*self._source)
            return self._ring.open(sealed, associated)

    def unwrap(self, key_id: str, wrapped: bytes, associated: bytes) -> bytes:
        """A referral's data key (to seal or open more of that referral's PII with it), re-reading the
        keyring like ``open``."""
        try:
            return self.ring.unwrap(key_id, wrapped, associated)
        except UnknownKeyError:
            self._ring = load_keyring(*self._source)
            return self._ring.unwrap(key_id, wrapped, associated)
