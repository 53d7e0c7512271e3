"""The PII master keys of this process, reloaded when a sealed record names a key they do not hold yet."""

from __future__ import annotations

from shared.crypto import KeyRing, Sealed, UnknownKeyError, load_keyring

__all__ = ["Keys"]


class Keys:
    """The configured keyring; ``open`` re-reads it once if a record was wrapped under a newer master key
    (`refnet keys rotate` may have re-wrapped data keys under a master key added after we started)."""

    def __init__(self, keyring_file: str, single_key: str, single_key_id: str) -> None:
        self._source = (keyring_file, single_key, single_key_id)
        self.ring: KeyRing = load_keyring(*self._source)

    def open(self, sealed: Sealed, associated: bytes) -> bytes:
        try:
            return self.ring.open(sealed, associated)
        except UnknownKeyError:
            self.ring = load_keyring(*self._source)
            return self.ring.open(sealed, associated)

    def data_key(self, key_id: str, wrapped: bytes, associated: bytes) -> bytes:
        """A referral's data key, unwrapped (to seal more of that referral's PII with it)."""
        try:
            return self.ring.unwrap(key_id, wrapped, associated)
        except UnknownKeyError:
            self.ring = load_keyring(*self._source)
            return self.ring.unwrap(key_id, wrapped, associated)
