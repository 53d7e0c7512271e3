"""`refnet up`: embedded PostgreSQL and NATS, migrations, demo seed, and the three services supervised."""

from __future__ import annotations

import asyncio
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
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import structlog

from refnet_dev.demo import seed_demo, write_credentials
from shared.config import Settings, load_settings
from shared.crypto import KeyringDoc, generate_master_key
from shared.db import service_dsn
from shared.migrate import apply_migrations

__all__ = ["ensure_secrets", "run_up"]

log = structlog.get_logger("refnet.up")

SERVICES = ("intake", "routing", "notify")


def _write_secret(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")


def _new_keyring() -> str:
    return msgspec.json.encode(KeyringDoc(current="k1", keys={"k1": generate_master_key()})).decode()


def _new_signing_key() -> str:
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def ensure_secrets(data_dir: Path) -> dict[str, str]:
    """Generate local secrets once under DATA_DIR/secrets; return the ``*_FILE`` variables naming them."""
    sdir = data_dir / "secrets"
    sdir.mkdir(parents=True, exist_ok=True)
    os.chmod(sdir, 0o700)
    files: dict[str, tuple[Path, Callable[[], str]]] = {
        "REFNET_SECRET_KEY_FILE": (sdir / "secret_key", _new_signing_key),
        "REFNET_PII_KEYRING_FILE": (sdir / "pii_keyring.json", _new_keyring),
    }
    env: dict[str, str] = {}
    for var, (path, make) in files.items():
        if not path.exists():
            _write_secret(path, make())
        env[var] = str(path)
    return env


def _parent_death_signal() -> None:
    # Linux: if the supervisor dies (even by SIGKILL) its services get SIGTERM, so none is orphaned.
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class _Child:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self.restarts = 0
        self.next_start = 0.0

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, env=self.env, preexec_fn=_parent_death_signal)
        self.started_at = time.monotonic()
        log.info("up.service_started", service=self.name, pid=self.proc.pid)

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()


async def _prepare_database(url: str, demo: bool | None, data_dir: Path, base_url: str) -> bool:
    applied = await apply_migrations(url)
    for name in applied:
        log.info("up.migrated", migration=name)
    conn = await asyncpg.connect(url)
    try:
        empty = (await conn.fetchval("SELECT count(*) FROM partners")) == 0
        if demo is False or (demo is None and not empty) or not empty:
            return False
        creds = await seed_demo(conn, base_url)
    finally:
        await conn.close()
    write_credentials(data_dir / "demo-credentials.json", creds)
    return True


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback URL we built
                if resp.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def run_up(data_dir: Path, port: int | None, demo: bool | None, settings: Settings | None = None) -> int:
    """Run the platform in the foreground until SIGINT/SIGTERM; return the exit code."""
    from refnet_dev.embedded import EmbeddedNats, EmbeddedPostgres

    settings = settings or load_settings()
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or settings.port
    stop = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    secret_env = ensure_secrets(data_dir)
    pg: EmbeddedPostgres | None = None
    nats_server: EmbeddedNats | None = None
    children: list[_Child] = []
    try:
        db_url = settings.database_url
        migrate_url = settings.migrate_database_url or db_url
        if not db_url:
            pg = EmbeddedPostgres(data_dir / "postgres")
            migrate_url = pg.start()
            # Migrations run as the embedded superuser; the services log in as the RLS-bound role.
            db_url = service_dsn(migrate_url)
            log.info("up.postgres", data=str(pg.pgdata))
        nats_url = settings.nats_url
        if not nats_url:
            nats_server = EmbeddedNats(data_dir / "nats")
            nats_url = nats_server.start()
            log.info("up.nats", url=nats_url)
        base_url = settings.base_url or f"http://127.0.0.1:{port}"
        seeded = asyncio.run(_prepare_database(migrate_url, demo, data_dir, base_url))
        env = {
            **os.environ,
            **secret_env,
            "REFNET_DATABASE_URL": db_url,
            "REFNET_NATS_URL": nats_url,
            "REFNET_PORT": str(port),
            "REFNET_DATA_DIR": str(data_dir),
            "REFNET_BASE_URL": base_url,
        }
        # Services started from a terminal log readable lines unless JSON was asked for.
        env.setdefault("REFNET_LOG_FORMAT", "console")
        for name in SERVICES:
            child = _Child(name, [sys.executable, "-m", "refnet.cli", "serve", name], env)
            child.start()
            children.append(child)
        if _wait_http(f"http://127.0.0.1:{port}/healthz", 30):
            creds = data_dir / "demo-credentials.json"
            print(
                f"refnet is up at {base_url}"
                + (f" — demo credentials in {creds}" if creds.exists() else "")
                + (" (demo network seeded)" if seeded else "")
                + ". Ctrl-C stops it.",
                flush=True,
            )
        while not stop:
            time.sleep(0.25)
            now = time.monotonic()
            for child in children:
                code = child.poll()
                if code is None or stop:
                    continue
                if child.next_start == 0.0:
                    # Crashed: restart with back-off, reset once it has stayed up for a minute.
                    uptime = now - child.started_at
                    child.restarts = 0 if uptime > 60 else child.restarts + 1
                    delay = min(30.0, 0.5 * 2**child.restarts)
                    child.next_start = now + delay
                    log.error("up.service_exited", service=child.name, code=code, restart_in_s=delay)
                elif now >= child.next_start:
                    child.next_start = 0.0
                    child.start()
        return 0
    finally:
        _stop_children(children)
        if nats_server is not None:
            nats_server.stop()
        if pg is not None:
            pg.stop()
        print("refnet stopped.", flush=True)


def _stop_children(children: list[_Child], timeout: float = 20.0) -> None:
    for child in children:
        if child.proc is not None and child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in children:
        if child.proc is None:
            continue
        try:
            child.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("up.service_killed", service=child.name)
            child.proc.kill()
            child.proc.wait()


def credentials(data_dir: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((data_dir / "demo-credentials.json").read_text())
    return data


def new_token() -> str:
    return secrets.token_urlsafe(16)
