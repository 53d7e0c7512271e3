"""The one platform launcher: PostgreSQL and NATS, migrations, the demo seed, and the services as processes.

Used by `refnet up` (refnet/up.py supervises what this starts), `refnet chaos` (refnet_dev/chaos.py),
`refnet bench` (bench/_platform.py) and the tests (tests/support/platform.py). Each server is embedded
unless a URL names an external one; each service runs as `refnet serve NAME`, one or more processes per
service, each addressable by a key ("intake", "routing", "routing-2", ...) to stop, kill, pause or
restart. Everything listens on loopback only.
"""

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import asyncpg
import structlog

from refnet_dev.demo import seed_demo
from refnet_dev.embedded import (
    LOOPBACK,
    EmbeddedNats,
    EmbeddedPostgres,
    NatsNode,
    free_port,
    free_ports,
    write_cluster_configs,
)
from shared.db import service_dsn
from shared.migrate import apply_migrations

__all__ = [
    "METRICS_PORT_VARS",
    "SERVICES",
    "Platform",
    "PlatformError",
    "ServiceProc",
    "consumer_names",
    "http_status",
]

log = structlog.get_logger("refnet.platform")

SERVICES = ("intake", "routing", "notify")
# Each service's metrics listener port (configuration variable).
METRICS_PORT_VARS = {
    "intake": "REFNET_METRICS_PORT",
    "routing": "REFNET_ROUTING_METRICS_PORT",
    "notify": "REFNET_NOTIFY_METRICS_PORT",
}
# The durable consumers the workers create on start; a worker is at work once its consumer exists.
CONSUMERS = {"routing": "routing", "notify": "notify"}


class PlatformError(RuntimeError):
    """A service exited or never became ready; the message is a one-line reason (with a log tail)."""


def _die_with_parent() -> None:
    # Linux: if the launcher dies (even by SIGKILL) its services get SIGTERM instead of lingering.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status of a GET, or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def consumer_names(jsz: Any) -> set[str]:
    """Every consumer name anywhere in a nats-server /jsz document (its nesting differs between versions)."""
    names: set[str] = set()
    if isinstance(jsz, dict):
        for key, value in jsz.items():
            if key == "consumer_detail" and isinstance(value, list):
                names.update(str(c.get("name")) for c in value if isinstance(c, dict))
            else:
                names |= consumer_names(value)
    elif isinstance(jsz, list):
        for item in jsz:
            names |= consumer_names(item)
    return names


@dataclass
class ServiceProc:
    """One running service process."""

    key: str
    service: str
    popen: subprocess.Popen[bytes]
    log_path: Path | None  # None: the output goes where the launcher's goes (a terminal)
    started_at: float


class Platform:
    """PostgreSQL, NATS and the services of one refnet, started and stopped together.

    ``workdir`` holds the embedded servers' data (``postgres/``, ``nats/``), the service logs
    (``KEY.log``) and is the services' REFNET_DATA_DIR. ``database_url`` (the services' login) with
    ``admin_url`` (migrations, seed, checks; default ``database_url``) use an external PostgreSQL;
    ``nats_url`` an external NATS; else ``database`` names a database of its own in the embedded server
    and ``nats_nodes`` (1 or 3) a single server or a cluster. ``workers``: processes per service.
    ``secret_env``: the signing and PII keys (random ones by default). ``isolated`` (tests, chaos,
    bench) drops inherited REFNET_* variables and adds JSON logs and free metrics ports; otherwise
    (`refnet up`) the environment is passed on as it is (`refnet up` adds free metrics ports itself). ``env`` overrides anything. ``command``
    replaces ``python -m refnet.cli`` (``serve NAME`` is appended).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        database_url: str | None = None,
        admin_url: str | None = None,
        database: str | None = None,
        pg_fast: bool = True,
        pg_settings: Mapping[str, str] | None = None,
        nats_url: str | None = None,
        nats_nodes: int = 1,
        port: int | None = None,
        base_url: str | None = None,
        workers: Mapping[str, int] | None = None,
        secret_env: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        isolated: bool = True,
        log_to_files: bool = True,
        own_session: bool = True,
        command: Sequence[str] | None = None,
    ) -> None:
        if nats_nodes not in (1, 3):
            raise ValueError("nats_nodes must be 1 or 3")
        if nats_url and nats_nodes != 1:
            raise ValueError("nats_nodes applies to embedded NATS only")
        self.workdir = Path(workdir).absolute()
        self.external_database_url = database_url
        self.external_admin_url = admin_url or database_url
        # Embedded only: a database of its own in the server (None: the server's default "postgres").
        self.database = database
        self.pg_fast = pg_fast
        self.pg_settings = dict(pg_settings or {})
        self.external_nats_url = nats_url
        self.nats_nodes = nats_nodes
        self.port = port or free_port()
        self._base_url = base_url
        self.workers = dict(workers if workers is not None else dict.fromkeys(SERVICES, 1))
        self.secret_env = dict(
            secret_env
            if secret_env is not None
            else {
                "REFNET_SECRET_KEY": secrets.token_urlsafe(32),
                "REFNET_PII_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            }
        )
        self.overrides = dict(env or {})
        self.isolated = isolated
        self.log_to_files = log_to_files
        self.own_session = own_session
        self.command = list(command or (sys.executable, "-m", "refnet.cli"))
        self.pg: EmbeddedPostgres | None = None
        self.nats_servers: list[EmbeddedNats] = []
        self.node_names: list[str] = []
        self.procs: dict[str, ServiceProc] = {}
        self.creds: dict[str, Any] = {}
        self._env: dict[str, str] | None = None
        self._ports: dict[str, int] = {}

    # ---- servers ------------------------------------------------------------------------------

    @property
    def admin_dsn(self) -> str:
        """Owner/superuser DSN (bypasses row-level security): migrations, seeding and checks only."""
        if self.external_admin_url:
            return self.external_admin_url
        if self.pg is None:
            raise RuntimeError("PostgreSQL is not started (start_servers)")
        return self.pg.uri(self.database or "postgres")

    @property
    def database_url(self) -> str:
        """What the services log in with: the row-level-security-bound role."""
        return self.external_database_url or service_dsn(self.admin_dsn)

    @property
    def nats_url(self) -> str:
        """NATS URL(s) for tooling and tests (comma-separated for a cluster): with the unrestricted admin
        user's credentials when embedded, so never log it."""
        return self.external_nats_url or ",".join(n.url for n in self.nats_servers)

    @property
    def services_nats_url(self) -> str:
        """The NATS URL(s) the services get, without credentials (each gets its own user and password)."""
        return self.external_nats_url or ",".join(n.plain_url for n in self.nats_servers)

    def nats_credentials_env(self, service: str) -> dict[str, str]:
        """REFNET_NATS_USER/PASSWORD of one service for the embedded server (none for an external one)."""
        if self.external_nats_url or not self.nats_servers:
            return {}
        user, password = self.nats_servers[0].credentials(service)
        return {"REFNET_NATS_USER": user, "REFNET_NATS_PASSWORD": password}

    @property
    def nats(self) -> EmbeddedNats:
        """The embedded nats-server (the first node of a cluster)."""
        if not self.nats_servers:
            raise RuntimeError("no embedded NATS (external REFNET_NATS_URL, or not started)")
        return self.nats_servers[0]

    @property
    def base_url(self) -> str:
        return self._base_url or f"http://{LOOPBACK}:{self.port}"

    def start_servers(self) -> None:
        """Start the embedded servers this platform needs (none when both URLs were given)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.external_database_url:
            self.pg = EmbeddedPostgres(
                self.workdir / "postgres", fast=self.pg_fast, settings=self.pg_settings
            )
            self.pg.start()
            log.info("platform.postgres", data=str(self.pg.pgdata))
        if not self.external_nats_url:
            self.nats_servers = self._nats_servers()
            for server in self.nats_servers:
                server.start(timeout=30)
            log.info("platform.nats", url=self.services_nats_url)

    def _nats_servers(self) -> list[EmbeddedNats]:
        if self.nats_nodes == 1:
            self.node_names = ["n1"]
            return [EmbeddedNats(self.workdir / "nats")]
        shared_credentials = self.workdir / "nats-credentials.json"
        ports = free_ports(3 * self.nats_nodes)
        nodes = [
            NatsNode(f"n{i + 1}", ports[3 * i], ports[3 * i + 1], ports[3 * i + 2])
            for i in range(self.nats_nodes)
        ]
        conf_dir = self.workdir / "nats-conf"
        write_cluster_configs(conf_dir, nodes, None)  # EmbeddedNats passes -sd itself
        self.node_names = [n.name for n in nodes]
        return [
            EmbeddedNats(
                self.workdir / "nats-data" / n.name,
                port=n.port,
                monitor_port=n.monitor_port,
                extra_args=("-c", str(conf_dir / f"{n.name}.conf")),
                credentials_path=shared_credentials,
            )
            for n in nodes
        ]

    async def migrate(self) -> list[str]:
        """Create this platform's database in the embedded server if asked, apply migrations; return
        the migrations applied."""
        if self.database and self.pg is not None:
            conn = await asyncpg.connect(self.pg.uri())
            try:
                if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.database):
                    await conn.execute(f'CREATE DATABASE "{self.database}"')
            finally:
                await conn.close()
        return await apply_migrations(self.admin_dsn)

    async def seed(self, capacity: int | None = None) -> dict[str, Any]:
        """Seed the demo network (credentials in ``creds``); ``capacity`` for every case manager."""
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            self.creds = await seed_demo(conn, self.base_url)
            if capacity is not None:
                await conn.execute("UPDATE case_managers SET capacity = $1", capacity)
        finally:
            await conn.close()
        return self.creds

    async def prepare_database(self, *, seed: bool = True, capacity: int | None = None) -> None:
        await self.migrate()
        if seed:
            await self.seed(capacity)

    # ---- services -----------------------------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The services' environment, fixed at first use: a restarted service shares the others' keys."""
        if self._env is None:
            self._env = self._make_env()
        return self._env

    def _make_env(self) -> dict[str, str]:
        inherited = dict(os.environ)
        defaults: dict[str, str] = {}
        if self.isolated:
            # Inherited REFNET_* settings (say, an external database) must not leak into the run.
            inherited = {k: v for k, v in inherited.items() if not k.startswith("REFNET_")}
            defaults = {"REFNET_LOG_FORMAT": "json", **self.metrics_env()}
        structural = {
            "REFNET_DATABASE_URL": self.database_url,
            "REFNET_NATS_URL": self.services_nats_url,
            "REFNET_PORT": str(self.port),
            "REFNET_DATA_DIR": str(self.workdir),
            **({"REFNET_BASE_URL": self._base_url} if self._base_url else {}),
            **({"REFNET_STREAM_REPLICAS": str(self.nats_nodes)} if self.nats_nodes > 1 else {}),
            **self.secret_env,
        }
        return {**defaults, **inherited, **structural, **self.overrides}

    def metrics_env(self) -> dict[str, str]:
        """A free metrics port for each service (never the fixed defaults: another platform may hold
        them); a service of several processes gets none (they would share it)."""
        env: dict[str, str] = {}
        for service, var in METRICS_PORT_VARS.items():
            many = self.workers.get(service, 0) > 1
            env[var] = "0" if many else str(free_port())
        return env

    def metrics_url(self, service: str) -> str | None:
        """Where ``service``'s metrics listener answers (None: off)."""
        port = int(self.env.get(METRICS_PORT_VARS[service], "0") or 0)
        return f"http://{LOOPBACK}:{port}/metrics" if port else None

    def process_keys(self) -> list[tuple[str, str]]:
        """(key, service) of every process ``start_all`` starts: "routing", "routing-2", ..."""
        return [
            (service if i == 0 else f"{service}-{i + 1}", service)
            for service in SERVICES
            for i in range(self.workers.get(service, 0))
        ]

    def start(self, key: str, service: str | None = None) -> ServiceProc:
        """Start (or start again) the process ``key``; its output is appended to ``KEY.log``."""
        service = service or (self.procs[key].service if key in self.procs else key.split("-")[0])
        # Each service its own NATS user: it may publish only its own events.
        env = {**self.env, **self.nats_credentials_env(service)}
        if service == "intake" and key != "intake" and env.get("REFNET_REUSE_PORT") != "true":
            # A second intake process cannot share the first one's ports.
            env = {
                **env,
                "REFNET_PORT": str(self._ports.setdefault(key, free_port())),
                "REFNET_METRICS_PORT": "0",
            }
        log_path = self.workdir / f"{key}.log" if self.log_to_files else None
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(log_path.open("ab")) if log_path is not None else None
            popen = subprocess.Popen(
                [*self.command, "serve", service],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                # Isolated: nothing relative to the caller's directory; `refnet up`: where the person is.
                cwd=self.workdir if self.isolated else None,
                # Own session: a Ctrl-C reaches the launcher only, which then stops them in order.
                start_new_session=self.own_session,
                preexec_fn=_die_with_parent,
            )
        proc = ServiceProc(key, service, popen, log_path, time.monotonic())
        self.procs[key] = proc
        log.info("platform.service_started", service=key, pid=popen.pid)
        return proc

    def start_all(self, timeout: float = 60.0) -> None:
        """Start every process and wait until they are at work."""
        for key, service in self.process_keys():
            self.start(key, service)
        self.wait_ready(timeout)

    def pid(self, key: str) -> int:
        return self.procs[key].popen.pid

    def pids(self) -> dict[str, int]:
        return {key: proc.popen.pid for key, proc in self.procs.items()}

    def poll(self, key: str) -> int | None:
        """The exit code of ``key``, None while it runs."""
        return self.procs[key].popen.poll()

    def kill(self, key: str) -> None:
        """SIGKILL and reap."""
        popen = self.procs[key].popen
        if popen.poll() is None:
            popen.send_signal(signal.SIGKILL)
        popen.wait()

    def terminate(
        self, key: str, timeout: float = 20.0, sig: int = signal.SIGTERM
    ) -> tuple[int | None, float]:
        """Send ``sig`` (SIGTERM); return (exit code, or None if it had to be killed; seconds it took)."""
        popen = self.procs[key].popen
        t0 = time.monotonic()
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(popen.pid, signal.SIGCONT)  # a paused one could not act on the signal
            popen.send_signal(sig)
        try:
            code: int | None = popen.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("platform.service_killed", service=key)
            popen.kill()
            popen.wait()
            code = None
        return code, time.monotonic() - t0

    def pause(self, key: str) -> None:
        os.kill(self.pid(key), signal.SIGSTOP)

    def resume(self, key: str) -> None:
        os.kill(self.pid(key), signal.SIGCONT)

    def restart(self, key: str, timeout: float = 60.0) -> float:
        """Start ``key`` again and wait until it is back at work (its NATS link ready; intake also
        answering /healthz); return the seconds that took. Needs the service logs (JSON)."""
        t0 = time.monotonic()
        before = self._ready_lines(key)
        self.start(key)
        while self._ready_lines(key) <= before:
            self.check_alive()
            if time.monotonic() - t0 > timeout:
                raise PlatformError(f"{key} not ready {timeout}s after restart: {self.log_tail(key)}")
            time.sleep(0.05)
        if self.procs[key].service == "intake":
            self.wait_intake(max(1.0, timeout - (time.monotonic() - t0)))
        return time.monotonic() - t0

    def _ready_lines(self, key: str) -> int:
        try:
            return (self.workdir / f"{key}.log").read_text(errors="replace").count('"bus.ready"')
        except OSError:
            return 0

    def check_alive(self) -> None:
        """Raise PlatformError if a service process has exited."""
        for proc in self.procs.values():
            code = proc.popen.poll()
            if code is not None:
                raise PlatformError(f"{proc.key} exited with code {code}: {self.log_tail(proc.key)}")

    def log_tail(self, key: str, lines: int = 5) -> str:
        try:
            text = (self.workdir / f"{key}.log").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(line[:300] for line in text[-lines:]) or "(empty log)"

    def logs(self) -> str:
        """Every service log, concatenated."""
        paths = sorted({p.log_path for p in self.procs.values() if p.log_path is not None})
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())

    def wait_intake(self, timeout: float = 30.0, path: str = "/healthz") -> float:
        """Wait until intake answers 200 on ``path``; return the seconds that took."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if http_status(self.base_url + path) == 200:
                return time.monotonic() - t0
            time.sleep(0.05)
        raise PlatformError(f"intake {path} not 200 after {timeout}s: {self.log_tail('intake')}")

    def wait_ready(self, timeout: float = 60.0) -> None:
        """intake's /readyz (database and NATS) answers 200 and the running workers' durable consumers
        exist (else the first events would wait for them)."""
        services = {p.service for p in self.procs.values()}
        wanted = {CONSUMERS[s] for s in services if s in CONSUMERS}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            intake_ok = "intake" not in services or http_status(self.base_url + "/readyz") == 200
            if intake_ok and wanted <= self._consumers():
                return
            time.sleep(0.1)
        raise PlatformError(f"services not ready after {timeout:.0f}s: {self.log_tail('intake')}")

    def _consumers(self) -> set[str]:
        if self.external_nats_url:
            # No monitor port to ask: the workers' consumers are taken on trust.
            return set(CONSUMERS.values())
        for server in self.nats_servers:
            if not server.is_running():
                continue
            url = f"{server.monitor_url}/jsz?accounts=true&streams=true&consumers=true"
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - loopback
                    return consumer_names(json.load(resp))
            except (OSError, ValueError):
                continue
        return set()

    def stop_all(self, timeout: float = 20.0) -> dict[str, int | None]:
        """SIGTERM every service (drain), SIGKILL what has not exited by the deadline; return exit codes
        (None: killed)."""
        for proc in self.procs.values():
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.popen.pid, signal.SIGCONT)
                proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int | None] = {}
        for key, proc in self.procs.items():
            try:
                codes[key] = proc.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("platform.service_killed", service=key)
                proc.popen.kill()
                proc.popen.wait()
                codes[key] = None
        return codes

    def close(self) -> None:
        """Stop the services, then NATS, then PostgreSQL; safe to call twice."""
        try:
            self.stop_all()
        finally:
            for server in self.nats_servers:
                with contextlib.suppress(Exception):
                    server.stop()
            if self.pg is not None:
                self.pg.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
