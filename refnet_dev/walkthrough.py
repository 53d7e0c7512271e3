"""`refnet demo env`: shell variables for the README's walkthrough, so it runs as pasted.

Prints ``export NAME='value'`` lines for ``eval``: the base URL, the first demo partner's API key, consent
dates relative to today; with ``--offer REFERRAL_ID``, who routing offered that referral to (asked of the
API as the demo admin, through the routing explanation), that case manager's sign-in from
demo-credentials.json, a fresh token and the assignment id. Demo data only: it reads the credentials file
that `refnet up --demo` wrote.
"""

from __future__ import annotations

import json
import shlex
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

__all__ = ["WalkthroughError", "demo_env", "offer_env", "shell_exports"]


class WalkthroughError(Exception):
    """The walkthrough cannot go on; the message says why and what to do, in one line."""


def load_credentials(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "demo-credentials.json"
    try:
        creds: dict[str, Any] = json.loads(path.read_text())
    except OSError:
        raise WalkthroughError(
            f"no {path}: start the platform with the demo network first (./dev up)"
        ) from None
    return creds


def shell_exports(values: dict[str, str]) -> str:
    """``export NAME='value'`` lines, quoted for any POSIX shell."""
    return "\n".join(f"export {name}={shlex.quote(value)}" for name, value in values.items())


def demo_env(creds: dict[str, Any], now: datetime | None = None) -> dict[str, str]:
    """What every step needs: where intake is, a partner's key, consent obtained yesterday and valid for a
    year, and the date of birth of a 16-year-old."""
    now = now or datetime.now(UTC)
    born = (now - timedelta(days=16 * 365 + 30)).date()
    return {
        "BASE": str(creds["base_url"]).rstrip("/"),
        "KEY": str(creds["partners"][0]["api_key"]),
        "PARTNER": str(creds["partners"][0]["name"]),
        "CONSENT_OBTAINED_AT": (now - timedelta(days=1)).replace(microsecond=0).isoformat(),
        "CONSENT_EXPIRES_AT": (now + timedelta(days=365)).replace(microsecond=0).isoformat(),
        "DATE_OF_BIRTH": born.isoformat(),
    }


def _token(client: httpx.Client, person: dict[str, Any]) -> str:
    r = client.post("/v1/auth/token", json={"email": person["email"], "password": person["password"]})
    if r.status_code != 200:
        raise WalkthroughError(f"signing in as {person['email']} failed ({r.status_code}): {r.text[:200]}")
    return str(r.json()["access_token"])


def offer_env(creds: dict[str, Any], referral_id: str, timeout: float = 30.0) -> dict[str, str]:
    """Wait until routing offered ``referral_id`` to a case manager; their sign-in, a token and the offer."""
    base = str(creds["base_url"]).rstrip("/")
    with httpx.Client(base_url=base, timeout=10) as client:
        admin = {"Authorization": f"Bearer {_token(client, creds['admins'][0])}"}
        deadline = time.monotonic() + timeout
        while True:
            r = client.get(f"/v1/referrals/{referral_id}/routing", headers=admin)
            if r.status_code == 404:
                raise WalkthroughError(f"no referral {referral_id}")
            r.raise_for_status()
            explained = r.json()
            live = [o for o in explained.get("offers", []) if o["state"] == "offered"]
            if live:
                break
            if explained["status"] == "unroutable":
                raise WalkthroughError(
                    f"referral {referral_id} is waiting in the unroutable queue ({explained['summary']});"
                    f" assign it by hand at {base}/app/queue/{referral_id}"
                )
            if time.monotonic() > deadline:
                raise WalkthroughError(f"referral {referral_id} was not offered within {timeout:.0f} s")
            time.sleep(0.2)
        offer = live[-1]
        cm_id = offer["case_manager"]["id"]
        person = next((c for c in creds["case_managers"] if c["id"] == cm_id), None)
        if person is None:
            raise WalkthroughError(f"the case manager {cm_id} is not in demo-credentials.json")
        return {
            "CM_NAME": str(person.get("name", person["email"])),
            "CM_EMAIL": str(person["email"]),
            "CM_PASSWORD": str(person["password"]),
            "TOKEN": _token(client, person),
            "ASSIGNMENT_ID": str(offer["assignment_id"]),
        }
