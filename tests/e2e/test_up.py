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
from typing import Any

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


class _Lines:
    """A process's output lines, read as they come (the process keeps running)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        import threading

        self.lines: list[str] = []
        assert proc.stdout is not None
        self._thread = threading.Thread(target=self._read, args=(proc.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hit = next((line for line in self.lines if text in line), None)
            if hit is not None:
                return hit
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never printed; got: {self.lines[-20:]}")


def test_a_second_up_on_the_same_data_dir_leaves_at_once_and_the_first_is_untouched(data_dir: Path) -> None:
    port = free_port()
    first = _start(data_dir, port)
    out = _Lines(first)
    try:
        up_line = out.wait_for("refnet is up")
        # Announced only once intake answers, with the web app's address and the demo admin's sign-in.
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        assert f"http://127.0.0.1:{port}/app/" in up_line
        creds = json.loads((data_dir / "demo-credentials.json").read_text())
        admin = creds["admins"][0]
        assert any(admin["email"] in line and admin["password"] in line for line in out.lines)
        lock = json.loads((data_dir / "refnet-up.lock").read_text())
        assert lock["pid"] == first.pid
        # The metrics listeners: free ports, named in the lock file; the public port hides /metrics.
        for service in ("intake", "routing", "notify"):
            url = lock["metrics"][service]
            assert url and not url.endswith((":9101/metrics", ":9102/metrics", ":9103/metrics")), url
            assert httpx.get(url, timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 404
        root = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert root.status_code in (301, 302, 303, 307, 308) and root.headers["location"] == "/app/"

        t0 = time.monotonic()
        second = subprocess.run(
            [
                sys.executable,
                "-m",
                "refnet.cli",
                "up",
                "--data-dir",
                str(data_dir),
                "--port",
                str(free_port()),
            ],
            env={k: v for k, v in os.environ.items() if not k.startswith("REFNET_")},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert time.monotonic() - t0 < 15
        assert second.returncode != 0
        said = (second.stdout + second.stderr).strip().splitlines()
        assert len(said) == 1, said
        assert f"pid {first.pid}" in said[0] and f"http://127.0.0.1:{port}" in said[0], said

        # The first is untouched: still ready, still takes referrals, and said "up" once.
        assert first.poll() is None
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        r = httpx.post(
            f"http://127.0.0.1:{port}/v1/referrals",
            json=referral_body(),
            headers={"Authorization": f"Bearer {creds['partners'][0]['api_key']}"},
            timeout=10,
        )
        assert r.status_code == 201, r.text
        assert sum("refnet is up" in line for line in out.lines) == 1
    finally:
        code, _ = _stop(first)
    assert code == 0


def test_up_refuses_a_port_in_use_in_one_line(data_dir: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "refnet.cli", "up", "--data-dir", str(data_dir), "--port", str(port)],
            env={k: v for k, v in os.environ.items() if not k.startswith("REFNET_")},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode != 0
    said = (done.stdout + done.stderr).strip().splitlines()
    assert len(said) == 1 and f"port {port}" in said[0], said
    assert not (data_dir / "postgres").exists(), "nothing may start before the port is known to be free"
