"""Test helpers: a running refnet (three service processes) against a fresh database and NATS server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from refnet_dev.embedded import EmbeddedNats, free_port
from shared.db import service_dsn

ROOT = Path(__file__).resolve().parents[2]


def referral_body(**overrides: Any) -> dict[str, Any]:
    """A valid referral; override any top-level key."""
    now = datetime.now(UTC)
    body: dict[str, Any] = {
        "youth": {
            "first_name": "Zyxwandra",
            "last_name": "Quellmorrow",
            "date_of_birth": (now - timedelta(days=16 * 365)).date().isoformat(),
            "phone": "323-555-0199",
            "gender": "female",
        },
        "location": {"zip": "90011"},
        "needs": ["housing", "mental_health"],
        "language": "es",
        "urgency": "routine",
        "consent": {
            "obtained_at": (now - timedelta(days=1)).isoformat(),
            "expires_at": (now + timedelta(days=365)).isoformat(),
            "method": "written",
            "scope": ["case_management"],
        },
        "intake": {
            "referral_setting": "youth_shelter",
            "prior_services": "voluntary",
            "age_first_exploited": 14,
            "education_level": "some_high_school",
            "socioeconomic_status": "low",
            "prior_arrests": 2,
            "foster_care_history": True,
        },
        "notes": "Met at the Vermont Ave drop-in; prefers text messages.",
    }
    body.update(overrides)
    return body


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path


@dataclass
class Platform:
    """Services as real processes; ``creds`` is the demo network seeded into this platform's database."""

    dsn: str
    nats: EmbeddedNats
    port: int
    env: dict[str, str]
    workdir: Path
    creds: dict[str, Any]
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str) -> Service:
        log_path = self.workdir / f"{name}.log"
        fh = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        proc = subprocess.Popen(
            [sys.executable, "-m", "refnet.cli", "serve", name], env=self.env, stdout=fh, stderr=fh, cwd=ROOT
        )
        fh.close()
        svc = Service(name, proc, log_path)
        self.services[name] = svc
        return svc

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        svc = self.services.pop(name)
        if svc.proc.poll() is None:
            svc.proc.send_signal(sig)
        try:
            return svc.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            svc.proc.kill()
            svc.proc.wait()
            raise AssertionError(f"{name} did not stop within {timeout}s after signal {sig}") from None

    def stop_all(self) -> None:
        for name in list(self.services):
            with contextlib.suppress(AssertionError):
                self.stop(name)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for svc in self.services.values():
                if svc.proc.poll() is not None:
                    raise AssertionError(f"{svc.name} exited: {svc.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError("intake never became ready")

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.workdir.glob("*.log"))

    def partner_key(self, i: int = 0) -> str:
        return str(self.creds["partners"][i]["api_key"])

    def staff_token(self, person: dict[str, Any]) -> str:
        r = httpx.post(
            self.base_url + "/v1/auth/token", json={"email": person["email"], "password": person["password"]}
        )
        r.raise_for_status()
        return str(r.json()["access_token"])


# TEMPORARY until migration 0013 (refnet_delivery_counts(), core branch) is merged; remove at the merge.
_DELIVERY_COUNTS_SQL = Path(__file__).with_name("delivery_counts_until_0013.sql")


async def _ensure_delivery_counts(dsn: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SELECT to_regproc('refnet_delivery_counts') IS NULL"):
            await conn.execute(_DELIVERY_COUNTS_SQL.read_text())
    finally:
        await conn.close()


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data))


@contextlib.contextmanager
def running_platform(
    dsn: str,
    workdir: Path,
    creds: dict[str, Any],
    *,
    extra_env: dict[str, str] | None = None,
    services: tuple[str, ...] = ("intake", "routing", "notify"),
) -> Iterator[Platform]:
    workdir.mkdir(parents=True, exist_ok=True)
    if "intake" in services:
        asyncio.run(_ensure_delivery_counts(dsn))
    nats = EmbeddedNats(workdir / "nats")
    nats_url = nats.start()
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("REFNET_")},
        "REFNET_DATABASE_URL": service_dsn(dsn),
        "REFNET_NATS_URL": nats_url,
        "REFNET_PORT": str(port),
        "REFNET_SECRET_KEY": "test-secret-key-not-for-production-0123456789",
        "REFNET_PII_MASTER_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        "REFNET_LOG_FORMAT": "json",
        "REFNET_LOG_LEVEL": "DEBUG",
        "REFNET_OUTBOX_POLL_SECONDS": "0.5",
        "REFNET_SSE_HEARTBEAT_SECONDS": "2",
        "REFNET_CONSENT_SWEEP_SECONDS": "1",
        # Each platform gets its own worker metrics ports so parallel platforms never collide.
        "REFNET_ROUTING_METRICS_PORT": str(free_port()),
        "REFNET_NOTIFY_METRICS_PORT": str(free_port()),
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    plat = Platform(dsn=dsn, nats=nats, port=port, env=env, workdir=workdir, creds=creds)
    try:
        for name in services:
            plat.start(name)
        if "intake" in services:
            plat.wait_ready()
        yield plat
    finally:
        plat.stop_all()
        nats.stop()


async def wait_for(predicate: Any, timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy; fail with a clear message."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
