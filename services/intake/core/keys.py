"""The PII master keys of this process (shared.crypto.Keys: re-read when the keyring file changes)."""

from __future__ import annotations

from shared.crypto import Keys

__all__ = ["Keys"]
