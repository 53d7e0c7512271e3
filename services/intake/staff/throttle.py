"""Sign-in throttling by account and client address together, blind to whether the account exists."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

__all__ = ["SignInThrottle"]


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    last: float = 0.0


class SignInThrottle:
    """Pure arithmetic on a clock the caller passes (testable with a fake one).

    Failures are counted per (email, client address) pair, so an attacker guessing from elsewhere
    locks only their own pair: the real person's correct sign-in from their address still works. After
    ``per_pair`` failures in a row a pair backs off exponentially (1, 2, 4 ... minutes, at most 15). A
    client address is also limited across all the emails it tries (``per_address``), so spraying
    guesses over many accounts is throttled too. Unknown emails count exactly like known ones: the
    answers and the throttling reveal nothing about which accounts exist.
    """

    def __init__(
        self,
        per_pair: int = 5,
        per_address: int = 50,
        base_seconds: float = 60.0,
        max_seconds: float = 900.0,
        max_keys: int = 100_000,
    ) -> None:
        self.per_pair = per_pair
        self.per_address = per_address
        self.base = base_seconds
        self.max = max_seconds
        self._max_keys = max_keys
        self._failures: dict[bytes, _Failures] = {}

    @staticmethod
    def _keys(email: str, address: str) -> tuple[bytes, bytes]:
        # Digests, not the emails themselves: the table holds no personal data.
        pair = hashlib.sha256(f"pair|{email.strip().lower()}|{address}".encode()).digest()[:16]
        addr = hashlib.sha256(f"addr|{address}".encode()).digest()[:16]
        return pair, addr

    def wait(self, email: str, address: str, now: float) -> int:
        """Seconds this pair must still wait before its next attempt (0: it may try now)."""
        left = 0.0
        for key in self._keys(email, address):
            entry = self._failures.get(key)
            if entry is not None and entry.locked_until > now:
                left = max(left, entry.locked_until - now)
        return math.ceil(left)

    def failed(self, email: str, address: str, now: float) -> None:
        pair, addr = self._keys(email, address)
        self._count(pair, self.per_pair, now)
        self._count(addr, self.per_address, now)

    def succeeded(self, email: str, address: str) -> None:
        """A correct password forgets the pair's failures (never the address's: one right guess among
        many wrong ones elsewhere must not reset the spraying limit)."""
        pair, _ = self._keys(email, address)
        self._failures.pop(pair, None)

    def _count(self, key: bytes, limit: int, now: float) -> None:
        entry = self._failures.get(key)
        if entry is None or (entry.locked_until <= now and now - entry.last > self.max):
            # Quiet for longer than the longest back-off: start again.
            entry = self._failures[key] = _Failures()
        entry.count += 1
        entry.last = now
        if entry.count >= limit:
            entry.locked_until = now + min(self.max, self.base * 2 ** (entry.count - limit))
        if len(self._failures) > self._max_keys:
            # Forget the oldest half; a forgotten key simply starts again.
            for k in list(self._failures)[: self._max_keys // 2]:
                del self._failures[k]
