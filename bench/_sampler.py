"""Peak memory and CPU time of the benchmarked processes, read from /proc in a background thread."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

__all__ = ["ResourceSampler", "cpu_seconds", "machine_cpu_seconds", "postgres_cpu_seconds"]

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def _status_kb(pid: int, field: str) -> int | None:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def _pss_kb(pid: int) -> int:
    # Pss splits shared pages (postgres shared_buffers) among the processes mapping them, so the
    # sum over the server's processes is its real footprint; summing RSS would count them N times.
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return 0


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; fields resume after the last ')'.
    return raw.rsplit(")", 1)[1].split()


def _children(ppid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and int(fields[1]) == ppid:
            found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far (0 if it is gone)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def postgres_cpu_seconds(postmaster: int) -> float:
    """CPU time of the postmaster, its live backends and the children it has already reaped."""
    fields = _stat_fields(postmaster)
    if fields is None:
        return 0.0
    total = sum(int(f) for f in fields[11:15]) / _CLK_TCK  # utime, stime, cutime, cstime
    return total + sum(cpu_seconds(pid) for pid in _children(postmaster))


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, summed over all CPUs (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already counted in user
    return (total - idle) / _CLK_TCK, total / _CLK_TCK


class ResourceSampler(threading.Thread):
    """Samples VmRSS of named processes (and Pss of the PostgreSQL process tree) every interval."""

    def __init__(self, pids: dict[str, int], postmaster: int | None, interval: float = 0.5) -> None:
        super().__init__(name="bench-sampler", daemon=True)
        self._pids = dict(pids)
        self._postmaster = postmaster
        self._interval = interval
        self._stop_event = threading.Event()
        self.peak_kb: dict[str, int] = dict.fromkeys(pids, 0)
        self.postgres_peak_kb = 0
        self.samples = 0

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self._interval)

    def sample(self) -> None:
        for name, pid in self._pids.items():
            rss = _status_kb(pid, "VmRSS")
            if rss is not None:
                self.peak_kb[name] = max(self.peak_kb[name], rss)
        if self._postmaster is not None:
            with contextlib.suppress(OSError):
                tree = [self._postmaster, *_children(self._postmaster)]
                self.postgres_peak_kb = max(self.postgres_peak_kb, sum(_pss_kb(pid) for pid in tree))
        self.samples += 1

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=5)
        self.sample()  # one last look, so a short run still has a value
