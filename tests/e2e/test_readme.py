"""The README as a newcomer follows it: its walkthrough block runs as written (no hand-editing) against a
running `refnet up`, and the simulated pilot it suggests fills the dashboard."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from refnet_dev.embedded import free_port
from tests.support.platform import ROOT

README = ROOT / "README.md"
MARKER = "<!-- tests/e2e/test_readme.py runs the next block as written"


def walkthrough_block(text: str) -> str:
    """The first ```sh block after the marker comment."""
    after = text.split(MARKER, 1)[1]
    m = re.search(r"```sh\n(.*?)\n```", after, re.S)
    assert m, "no ```sh block after the walkthrough marker"
    return m.group(1)


def section(text: str, title: str) -> str:
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


@pytest.fixture(scope="module")
def running_up() -> Iterator[tuple[Path, str]]:
    """`refnet up` as a person starts it (demo network), on a data dir and port of its own."""
    data_dir = Path(tempfile.mkdtemp(prefix="refnet-readme-"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFNET_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "refnet.cli", "up", "--data-dir", str(data_dir), "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        lines.extend(proc.stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("refnet is up" in line for line in lines):
            assert proc.poll() is None, "".join(lines[-30:])
            assert time.monotonic() < deadline, "refnet up never said it was up: " + "".join(lines[-30:])
            time.sleep(0.2)
        yield data_dir, f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(5)
        if proc.stdout is not None:
            proc.stdout.close()
        shutil.rmtree(data_dir, ignore_errors=True)


def _run(script: str, data_dir: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    # As pasted into a terminal at the repository root; only the data dir is this test's own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFNET_")}
    env["REFNET_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _json_lines(out: str) -> list[Any]:
    docs = []
    for line in out.splitlines():
        if line.startswith("{"):
            docs.append(json.loads(line))
    return docs


def test_the_walkthrough_runs_as_written(running_up: tuple[Path, str]) -> None:
    data_dir, base = running_up
    block = walkthrough_block(README.read_text())
    # Nothing to hand-edit: no placeholders, no fixed dates, no fixed port.
    for placeholder in ('"EMAIL"', '"PASSWORD"', "/ASSIGNMENT_ID/", "pick a "):
        assert placeholder not in block, placeholder
    assert not re.search(r"20\d\d-\d\d-\d\d", block), "a fixed date in the walkthrough"
    assert "8000" not in block

    done = _run(block, data_dir, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert f"Web app: {base}/app/" in out
    docs = _json_lines(out)
    created, problem, *_, final = docs
    assert created["status"] in ("received", "assigned") and created["region"] == "south_la"
    # The 422 names every offending field of the mistaken body at once, in words (no regex).
    assert problem["status"] == 422
    fields = {e["field"] for e in problem["errors"]}
    assert {"youth.date_of_birth", "location.zip", "needs[0]", "consent"} <= fields, problem
    assert "regex" not in json.dumps(problem)
    # The case manager routing chose, signed in; the offer accepted; the partner sees it.
    creds = json.loads((data_dir / "demo-credentials.json").read_text())
    emails = {c["email"] for c in creds["case_managers"] if "south_la" in c["regions"]}
    assert any(f"as {e} /" in out for e in emails), out
    assert final["id"] == created["id"] and final["status"] == "accepted", final
    # The offer was listed for the case manager, and accepting it answered with the referral, accepted.
    offered = next(d for d in docs if isinstance(d, dict) and "items" in d)
    assert [o["referral_id"] for o in offered["items"]] == [created["id"]]
    assert docs[-2]["id"] == created["id"] and docs[-2]["status"] == "accepted"
    assert f"{base}/app/cases/{created['id']}" in out


def test_the_readme_has_the_newcomers_sections() -> None:
    text = README.read_text()
    assert "rm -rf .refnet" in section(text, "Reset")
    assert "./dev demo simulate" in section(text, "Fill the dashboards with a simulated pilot")
    real = section(text, "Install for real")
    for needle in (
        "refnet staff create --role admin",
        "refnet partners create",
        "_FILE",
        "REFNET_DATABASE_URL",
        "REFNET_NATS_URL",
        "refnet backup",
    ):
        assert needle in real, needle
    assert "docs/README.md" in text


def test_a_simulated_pilot_fills_the_dashboard(running_up: tuple[Path, str]) -> None:
    data_dir, base = running_up
    block = section(README.read_text(), "Fill the dashboards with a simulated pilot")
    command = re.search(r"```sh\n(.*?)\n```", block, re.S)
    assert command is not None
    done = _run(command.group(1), data_dir, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    creds = json.loads((data_dir / "demo-credentials.json").read_text())
    admin = creds["admins"][0]
    token = httpx.post(f"{base}/v1/auth/token", json={"email": admin["email"], "password": admin["password"]})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    figures = httpx.get(
        f"{base}/v1/admin/metrics", params={"window": "all", "fresh": "true"}, headers=headers, timeout=30
    ).json()
    assert figures["referrals_total"] >= 100
    assert figures["timeline_bucket"] == "month" and len(figures["timeline"]) >= 20
    assert figures["referrals_by_region"]["south_la"] > 0
    assert figures["referrals_by_region"]["san_fernando_valley"] > 0
    assert figures["time_to_assignment"]["count"] > 0
    assert sum(n["count"] for n in figures["referrals_by_need"]) >= figures["referrals_total"]
    page = httpx.get(f"{base}/app/dashboard?window=all", headers=headers, cookies={"refnet_lang": "es"})
    assert page.status_code == 200
    assert 'aria-current="page" data-window="all"' in page.text and "todo el periodo" in page.text
