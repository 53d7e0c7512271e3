"""shared.runtime.settle_heap: a service's start-up heap is frozen and young collections are rarer."""

from __future__ import annotations

import subprocess
import sys

# Run in a process of its own: freezing and the thresholds are process-wide, and this one runs tests.
_PROBE = """
import gc
import services.intake.app
from shared.runtime import settle_heap
before = len(gc.get_objects())
settle_heap()
print(before, gc.get_freeze_count(), len(gc.get_objects()), *gc.get_threshold())
"""


def test_settle_heap_freezes_what_start_up_allocated() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    before, frozen, tracked, young, middle, old = map(int, out.stdout.split())
    # Intake's imports alone are tens of thousands of tracked objects; after settling, collections
    # see almost none of them.
    assert before > 50_000
    assert frozen > 50_000
    assert tracked < 1_000
    assert (young, middle, old) == (10_000, 10, 10)
