"""`refnet up`: the platform of refnet_dev's launcher (embedded PostgreSQL and NATS unless URLs name external
ones, migrations, the demo seed, the three services) in the foreground, each service restarted if it crashes.

One `refnet up` per data directory (an flock on DATA_DIR/refnet-up.lock); "up" is announced once intake
answers, with the web app's address and the demo admin's sign-in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec
import structlog

from refnet_dev.demo import write_credentials
from refnet_dev.platform import METRICS_PORT_VARS, http_status
from shared.config import Settings, load_settings
from shared.crypto import KeyringDoc, generate_master_key

if TYPE_CHECKING:
    from refnet_dev.platform import Platform

__all__ = ["LOCK_FILE", "DataDirLock", "announcement", "ensure_secrets", "run_up"]

log = structlog.get_logger("refnet.up")


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
        # The audit chain's HMAC key (shared.audit.load_key reads the same file when the variable is unset).
        "REFNET_AUDIT_KEY_FILE": (sdir / "audit_key", _new_signing_key),
    }
    env: dict[str, str] = {}
    for var, (path, make) in files.items():
        if not path.exists():
            _write_secret(path, make())
        env[var] = str(path)
    return env


LOCK_FILE = "refnet-up.lock"


class DataDirInUse(Exception):
    """Another `refnet up` holds the data directory; the message names it (pid, URL)."""


class DataDirLock:
    """An exclusive flock on DATA_DIR/refnet-up.lock for the life of this process, naming its holder.

    The kernel drops the lock when the process ends however it ends (even SIGKILL), so a stale file never
    blocks a start; the services and servers we start do not inherit the descriptor (subprocess closes it).
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, holder: dict[str, Any]) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirInUse(self._describe_holder()) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode() + b"\n")
        self._fd = fd

    def update(self, holder: dict[str, Any]) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps(holder).encode() + b"\n", 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None

    def _describe_holder(self) -> str:
        # The holder writes its pid and URL right after taking the lock: give it a moment.
        doc: dict[str, Any] = {}
        for _ in range(20):
            with contextlib.suppress(OSError, ValueError):
                doc = json.loads(self.path.read_text() or "{}")
            if doc.get("pid"):
                break
            time.sleep(0.05)
        return f"pid {doc.get('pid', '?')}, {doc.get('url', 'URL unknown')}"


def _port_free(host: str, port: int) -> bool:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As uvicorn binds: connections of an earlier run in TIME_WAIT do not make the port "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _metrics_ports() -> dict[str, str]:
    """Metrics ports of the three services: the ones configured in the environment, else free ones (never
    the fixed defaults, which a second platform on the machine would find taken)."""
    from refnet_dev.embedded import free_port

    return {
        var: os.environ[var] if os.environ.get(var) else str(free_port())
        for var in METRICS_PORT_VARS.values()
    }


def _launcher(data_dir: Path, port: int, settings: Settings, metrics_env: dict[str, str]) -> Platform:
    """The platform of `refnet up`: embedded servers in DATA_DIR unless URLs name external ones; the
    services inherit this environment and share its terminal."""
    from refnet_dev.platform import Platform

    return Platform(
        data_dir,
        database_url=settings.database_url or None,
        # Migrations run as the embedded superuser (or the migration URL); the services log in as the
        # row-level-security-bound role.
        admin_url=(settings.migrate_database_url or settings.database_url) or None,
        pg_fast=False,  # a person's data: durable
        nats_url=settings.nats_url or None,
        port=port,
        # Links in emails and the demo credentials point here (as the services are told).
        base_url=settings.base_url or f"http://127.0.0.1:{port}",
        secret_env=ensure_secrets(data_dir),
        # Services started from a terminal log readable lines unless JSON was asked for.
        env={"REFNET_LOG_FORMAT": os.environ.get("REFNET_LOG_FORMAT", "console"), **metrics_env},
        isolated=False,
        log_to_files=False,
        # One process group with the terminal: Ctrl-C reaches the services too, and they drain.
        own_session=False,
    )


async def _prepare_database(plat: Platform, demo: bool | None, data_dir: Path) -> bool:
    """Migrate; seed the demo network into an empty database unless --no-demo; True when seeded."""
    for name in await plat.migrate():
        log.info("up.migrated", migration=name)
    conn = await asyncpg.connect(plat.admin_dsn)
    try:
        empty = (await conn.fetchval("SELECT count(*) FROM partners")) == 0
    finally:
        await conn.close()
    if demo is False or not empty:
        return False
    write_credentials(data_dir / "demo-credentials.json", await plat.seed())
    return True


def announcement(base_url: str, data_dir: Path, seeded: bool, metrics: dict[str, str | None]) -> str:
    """What `refnet up` prints once intake answers: where to go and how to sign in."""
    lines = [
        f"refnet is up: open {base_url.rstrip('/')}/app/ (API {base_url.rstrip('/')}/v1/). Ctrl-C stops it."
    ]
    creds_path = data_dir / "demo-credentials.json"
    try:
        creds = json.loads(creds_path.read_text())
    except (OSError, ValueError):
        creds = None
    if creds and creds.get("admins"):
        admin = creds["admins"][0]
        lines.append(
            f"  demo admin sign-in: {admin['email']} / {admin['password']}"
            + (" (demo network seeded just now)" if seeded else "")
        )
        lines.append(f"  every demo sign-in and partner API key: {creds_path}")
    else:
        lines.append("  no demo network: create the first admin with `refnet staff create --role admin`")
    shown = [f"{name} {url}" for name, url in metrics.items() if url]
    if shown:
        lines.append("  metrics: " + ", ".join(shown))
    return "\n".join(lines)


def run_up(data_dir: Path, port: int | None, demo: bool | None, settings: Settings | None = None) -> int:
    """Run the platform in the foreground until SIGINT/SIGTERM, restarting a service that crashed;
    return the exit code."""
    settings = settings or load_settings()
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or settings.port
    base_url = settings.base_url or f"http://127.0.0.1:{port}"
    # First of all: one `refnet up` per data directory. A second one would take over the first one's
    # PostgreSQL and NATS and leave it answering 503; it leaves at once, naming the running one.
    lock = DataDirLock(data_dir)
    try:
        lock.acquire({"pid": os.getpid(), "url": base_url, "data_dir": str(data_dir)})
    except DataDirInUse as exc:
        print(
            f"refnet up: {data_dir} is in use by a running refnet up ({exc}); stop it first", file=sys.stderr
        )
        return 1
    try:
        if not _port_free(settings.host, port):
            print(
                f"refnet up: port {port} on {settings.host} is in use (another refnet?); choose one with --port",
                file=sys.stderr,
            )
            return 1
        return _supervise(data_dir, port, demo, settings, base_url, lock)
    finally:
        lock.release()


def _supervise(
    data_dir: Path, port: int, demo: bool | None, settings: Settings, base_url: str, lock: DataDirLock
) -> int:
    stop = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    metrics_env = _metrics_ports()
    plat = _launcher(data_dir, port, settings, metrics_env)
    metrics = {
        name: (f"http://127.0.0.1:{metrics_env[var]}/metrics" if metrics_env[var] not in ("", "0") else None)
        for name, var in METRICS_PORT_VARS.items()
    }
    lock.update({"pid": os.getpid(), "url": base_url, "data_dir": str(data_dir), "metrics": metrics})
    # Per process: restarts in a row (for the back-off) and when the next start is due (0: running).
    restarts: dict[str, int] = {}
    next_start: dict[str, float] = {}
    announced = False
    next_probe = 0.0
    try:
        plat.start_servers()
        seeded = asyncio.run(_prepare_database(plat, demo, data_dir))
        for key, service in plat.process_keys():
            plat.start(key, service)
        while not stop:
            time.sleep(0.25)
            now = time.monotonic()
            if not announced and now >= next_probe:
                # "Up" only once intake answers (database and NATS reachable), with where to go.
                next_probe = now + 0.5
                if http_status(plat.base_url + "/readyz") == 200:
                    print(announcement(plat.base_url, data_dir, seeded, metrics), flush=True)
                    announced = True
            for key, proc in list(plat.procs.items()):
                code = plat.poll(key)
                if code is None or stop:
                    continue
                if not next_start.get(key):
                    # Crashed: restart with back-off, reset once it has stayed up for a minute.
                    uptime = now - proc.started_at
                    restarts[key] = 0 if uptime > 60 else restarts.get(key, 0) + 1
                    delay = min(30.0, 0.5 * 2 ** restarts[key])
                    next_start[key] = now + delay
                    log.error("up.service_exited", service=key, code=code, restart_in_s=delay)
                elif now >= next_start[key]:
                    next_start[key] = 0.0
                    plat.start(key)
        return 0
    finally:
        plat.close()
        print("refnet stopped.", flush=True)
