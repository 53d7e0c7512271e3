"""`refnet up`: the platform of refnet_dev's launcher (embedded PostgreSQL and NATS unless URLs name external
ones, migrations, the demo seed, the three services) in the foreground, each service restarted if it crashes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import msgspec
import structlog

from refnet_dev.demo import write_credentials
from refnet_dev.platform import PlatformError
from shared.config import Settings, load_settings
from shared.crypto import KeyringDoc, generate_master_key

if TYPE_CHECKING:
    from refnet_dev.platform import Platform

__all__ = ["ensure_secrets", "run_up"]

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
    }
    env: dict[str, str] = {}
    for var, (path, make) in files.items():
        if not path.exists():
            _write_secret(path, make())
        env[var] = str(path)
    return env


def _launcher(data_dir: Path, port: int, settings: Settings) -> Platform:
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
        env={"REFNET_LOG_FORMAT": os.environ.get("REFNET_LOG_FORMAT", "console")},
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


def run_up(data_dir: Path, port: int | None, demo: bool | None, settings: Settings | None = None) -> int:
    """Run the platform in the foreground until SIGINT/SIGTERM, restarting a service that crashed;
    return the exit code."""
    settings = settings or load_settings()
    data_dir = data_dir.absolute()
    data_dir.mkdir(parents=True, exist_ok=True)
    stop = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    plat = _launcher(data_dir, port or settings.port, settings)
    # Per process: restarts in a row (for the back-off) and when the next start is due (0: running).
    restarts: dict[str, int] = {}
    next_start: dict[str, float] = {}
    try:
        plat.start_servers()
        seeded = asyncio.run(_prepare_database(plat, demo, data_dir))
        for key, service in plat.process_keys():
            plat.start(key, service)
        with contextlib.suppress(PlatformError):
            plat.wait_intake(30)
            creds = data_dir / "demo-credentials.json"
            print(
                f"refnet is up at {plat.base_url}"
                + (f" — demo credentials in {creds}" if creds.exists() else "")
                + (" (demo network seeded)" if seeded else "")
                + ". Ctrl-C stops it.",
                flush=True,
            )
        while not stop:
            time.sleep(0.25)
            now = time.monotonic()
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
