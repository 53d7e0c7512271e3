"""Embedded PostgreSQL and NATS, the seeded demo network and the three services as processes."""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench._replay import LOG_SETTINGS
from refnet_dev.demo import seed_demo
from refnet_dev.embedded import EmbeddedNats, EmbeddedPostgres, free_port
from shared.db import service_dsn
from shared.migrate import apply_migrations

__all__ = ["SERVICES", "BenchError", "BenchPlatform"]

ROOT = Path(__file__).resolve().parents[1]
SERVICES = ("intake", "routing", "notify")
# Enough that no referral goes unroutable for capacity: the benchmark measures throughput, not
# what happens when every case manager is full.
CAPACITY = 1_000_000


class BenchError(Exception):
    """The benchmark cannot go on; the message is the one-line reason shown to the user."""


def _die_with_parent() -> None:
    # Linux: if the benchmark is killed (even SIGKILL) its services get SIGTERM instead of lingering.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def _consumer_names(jsz: Any) -> set[str]:
    """Every consumer name anywhere in a /jsz document (its nesting differs between versions)."""
    names: set[str] = set()
    if isinstance(jsz, dict):
        for key, value in jsz.items():
            if key == "consumer_detail" and isinstance(value, list):
                names.update(str(c.get("name")) for c in value if isinstance(c, dict))
            else:
                names |= _consumer_names(value)
    elif isinstance(jsz, list):
        for item in jsz:
            names |= _consumer_names(item)
    return names


@dataclass
class BenchPlatform:
    """Owns every process the benchmark starts; `close()` stops them all and is safe to call twice."""

    workdir: Path
    pg: EmbeddedPostgres | None = None
    nats: EmbeddedNats | None = None
    port: int = 0
    creds: dict[str, Any] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dsn(self) -> str:
        assert self.pg is not None
        return self.pg.uri()

    def start_servers(self) -> None:
        # Durable settings (fsync, full_page_writes on): the numbers must mean something in production.
        self.pg = EmbeddedPostgres(self.workdir / "pg", fast=False, settings=LOG_SETTINGS)
        self.pg.start()
        self.nats = EmbeddedNats(self.workdir / "nats")
        self.nats.start()

    async def prepare_database(self) -> None:
        await apply_migrations(self.dsn)
        conn = await asyncpg.connect(self.dsn)
        try:
            self.port = free_port()
            self.creds = await seed_demo(conn, self.base_url)
            await conn.execute("UPDATE case_managers SET capacity = $1", CAPACITY)
        finally:
            await conn.close()

    def service_env(self) -> dict[str, str]:
        assert self.nats is not None
        return {
            # Inherited REFNET_* settings (say, an external database) must not leak into the run.
            **{k: v for k, v in os.environ.items() if not k.startswith("REFNET_")},
            "REFNET_DATABASE_URL": service_dsn(self.dsn),
            "REFNET_NATS_URL": self.nats.url,
            "REFNET_PORT": str(self.port),
            "REFNET_DATA_DIR": str(self.workdir),
            # The benchmark measures the pipeline, not the per-key rate limit.
            "REFNET_RATE_LIMIT_PER_MINUTE": "0",
            "REFNET_ROUTING_METRICS_PORT": str(free_port()),
            "REFNET_NOTIFY_METRICS_PORT": str(free_port()),
            "REFNET_SECRET_KEY": secrets.token_urlsafe(32),
            "REFNET_PII_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            "REFNET_LOG_FORMAT": "json",
            # Logging every request would measure the log pipeline, not the system.
            "REFNET_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }

    def start_services(self, timeout: float = 90.0) -> None:
        env = self.service_env()
        for name in SERVICES:
            with (self.workdir / f"{name}.log").open("ab") as log:
                # Own session: a Ctrl-C reaches the benchmark only, which then stops them in order.
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "refnet.cli", "serve", name],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent,
                )
        self._wait_ready(timeout)

    def check_services(self) -> None:
        """Raise if a service process has exited."""
        for name, proc in self.procs.items():
            code = proc.poll()
            if code is not None:
                raise BenchError(f"{name} exited with code {code}: {self.log_tail(name)}")

    def log_tail(self, name: str) -> str:
        try:
            lines = (self.workdir / f"{name}.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return lines[-1][:300] if lines else "(empty log)"

    def _wait_ready(self, timeout: float) -> None:
        assert self.nats is not None
        deadline = time.monotonic() + timeout
        # Intake's /readyz covers the database and NATS; the workers have no HTTP port, so wait
        # until their durable consumers exist, otherwise the first events would wait for them.
        jsz = f"{self.nats.monitor_url}/jsz?accounts=true&streams=true&consumers=true"
        while time.monotonic() < deadline:
            self.check_services()
            if _http_status(f"{self.base_url}/readyz") == 200:
                try:
                    with urllib.request.urlopen(jsz, timeout=1) as resp:  # noqa: S310 - loopback
                        names = _consumer_names(json.load(resp))
                except (OSError, ValueError):
                    names = set()
                if {"routing", "notify"} <= names:
                    return
            time.sleep(0.2)
        raise BenchError(f"services not ready after {timeout:.0f}s (intake: {self.log_tail('intake')})")

    def stop_services(self, timeout: float = 20.0) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def close(self) -> None:
        try:
            self.stop_services()
        finally:
            try:
                if self.nats is not None:
                    self.nats.stop()
            finally:
                if self.pg is not None:
                    self.pg.stop()
