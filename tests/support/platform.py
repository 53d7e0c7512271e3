"""Test helpers: a running refnet (three service processes, started by refnet_dev.platform) against a fresh
database and NATS server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from refnet_dev.platform import Platform as LaunchedPlatform
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
            # Every scope (contract v1.1): the partner follows the case, the youth is in the evaluation.
            "scope": ["case_management", "evaluation", "share_status_with_referrer"],
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


class Platform(LaunchedPlatform):
    """The launcher's platform with the demo network's credentials at hand (``creds``)."""

    @property
    def dsn(self) -> str:
        """The test database's owner DSN (row-level security does not apply)."""
        return self.admin_dsn

    def partner_key(self, i: int = 0) -> str:
        return str(self.creds["partners"][i]["api_key"])

    def staff_token(self, person: dict[str, Any]) -> str:
        r = httpx.post(
            self.base_url + "/v1/auth/token", json={"email": person["email"], "password": person["password"]}
        )
        r.raise_for_status()
        return str(r.json()["access_token"])


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data))


# Fixed keys, so a test can read what the services sealed or signed (they are never used elsewhere).
TEST_SECRETS = {
    "REFNET_SECRET_KEY": "test-secret-key-not-for-production-0123456789",
    "REFNET_PII_MASTER_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
}


@contextlib.contextmanager
def running_platform(
    dsn: str,
    workdir: Path,
    creds: dict[str, Any],
    *,
    extra_env: dict[str, str] | None = None,
    services: tuple[str, ...] = ("intake", "routing", "notify"),
    command: tuple[str, ...] | None = None,
) -> Iterator[Platform]:
    """The services as processes on the test database ``dsn`` (already seeded: ``creds``) and a NATS
    server of their own; ``command`` replaces ``python -m refnet.cli`` (say, a wrapper)."""
    plat = Platform(
        workdir,
        database_url=service_dsn(dsn),
        admin_url=dsn,
        workers=dict.fromkeys(services, 1),
        secret_env=TEST_SECRETS,
        env={
            "REFNET_LOG_LEVEL": "DEBUG",
            "REFNET_OUTBOX_POLL_SECONDS": "0.5",
            "REFNET_SSE_HEARTBEAT_SECONDS": "2",
            "REFNET_CONSENT_SWEEP_SECONDS": "1",
            "PYTHONPATH": str(ROOT),
            **(extra_env or {}),
        },
        command=command,
    )
    plat.creds = creds
    try:
        plat.start_servers()
        plat.start_all(timeout=30)
        yield plat
    finally:
        plat.close()


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
