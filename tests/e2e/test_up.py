"""`refnet up` as a person runs it: one command brings up everything with the demo network, stops cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from refnet_dev.embedded import free_port
from shared.codes import NEED_CODES
from tests.support.platform import ROOT, referral_body


@pytest.fixture
def data_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="refnet-up-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _cmdlines(pid: int) -> dict[int, str]:
    """Live descendants and their command lines; a child may be a zombie until the supervisor reaps it."""
    out: dict[int, str] = {}
    for c in psutil.Process(pid).children(recursive=True):
        try:
            if c.status() != psutil.STATUS_ZOMBIE:
                out[c.pid] = " ".join(c.cmdline())
        except psutil.Error:
            continue
    return out


def _start(data_dir: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFNET_")}
    env["REFNET_LOG_FORMAT"] = "json"
    return subprocess.Popen(
        [sys.executable, "-m", "refnet.cli", "up", "--data-dir", str(data_dir), "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_up(proc: subprocess.Popen[str], port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"refnet up exited early: {proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError("refnet up never became ready")


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=45)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("refnet up did not stop within 45 s of SIGTERM") from None
    return proc.returncode, out


def test_up_runs_the_platform_with_demo_network_and_stops_cleanly(data_dir: Path) -> None:
    port = free_port()
    proc = _start(data_dir, port)
    try:
        _wait_up(proc, port)
        creds = json.loads((data_dir / "demo-credentials.json").read_text())
        assert creds["base_url"] == f"http://127.0.0.1:{port}"
        assert len(creds["partners"]) == 9
        assert all(p["api_key"].startswith("rnk_") for p in creds["partners"])
        regions = {r for cm in creds["case_managers"] for r in cm["regions"]}
        assert regions == {"south_la", "san_fernando_valley"}
        for region in regions:
            served = {n for cm in creds["case_managers"] if region in cm["regions"] for n in cm["needs"]}
            assert served == set(NEED_CODES), f"{region} misses {set(NEED_CODES) - served}"
        assert creds["admins"]
        assert creds["evaluators"]
        assert oct((data_dir / "demo-credentials.json").stat().st_mode & 0o777) == "0o600"

        # Separate processes: three services under the supervisor, plus the embedded servers.
        children = _cmdlines(proc.pid)
        for svc in ("intake", "routing", "notify"):
            assert any(f"serve {svc}" in c for c in children.values()), children
        pids = set(children)
        pg_pid = int((data_dir / "postgres" / "pgdata" / "postmaster.pid").read_text().split()[0])
        pids.add(pg_pid)

        auth = {"Authorization": f"Bearer {creds['partners'][2]['api_key']}"}
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/referrals",
            json=referral_body(location={"zip": "91402"}),
            headers=auth,
        )
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        deadline = time.monotonic() + 20
        while (
            httpx.get(f"http://127.0.0.1:{port}/v1/referrals/{rid}", headers=auth).json()["status"]
            != "assigned"
        ):
            assert time.monotonic() < deadline, "referral was never assigned"
            time.sleep(0.1)

        # A crashed service is restarted by the supervisor.
        routing = next(pid for pid, c in children.items() if "serve routing" in c)
        os.kill(routing, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while True:
            now = _cmdlines(proc.pid)
            if any("serve routing" in c and pid != routing for pid, c in now.items()):
                break
            assert time.monotonic() < deadline, "routing was not restarted"
            time.sleep(0.2)
        pids |= set(_cmdlines(proc.pid))
    finally:
        code, out = _stop(proc)
    assert code == 0, out
    time.sleep(0.5)
    alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert alive == [], f"orphans left running: {alive}"
    assert "up.service_exited" in out

    # Second start reuses the data: no reseed, same credentials, the referral is still there.
    before = (data_dir / "demo-credentials.json").read_text()
    proc = _start(data_dir, port)
    try:
        _wait_up(proc, port)
        assert (data_dir / "demo-credentials.json").read_text() == before
        r = httpx.get(f"http://127.0.0.1:{port}/v1/referrals/{rid}", headers=auth)
        assert r.status_code == 200
        assert r.json()["status"] == "assigned"
    finally:
        code, out = _stop(proc)
    assert code == 0, out
