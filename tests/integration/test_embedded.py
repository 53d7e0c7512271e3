"""Embedded PostgreSQL and nats-server: persistence across stop/start, kill -9 recovery, stable ports."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.js.api import StorageType, StreamConfig

from refnet_dev.embedded import EmbeddedNats, EmbeddedPostgres, free_port, nats_server_binary


async def _fetchval(uri: str, sql: str) -> object:
    conn = await asyncpg.connect(uri)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def test_postgres_data_survives_stop_and_start(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "db")  # default settings: fsync stays on
    try:
        uri = pg.start()
        assert (
            uri
            == f"postgresql://postgres@/postgres?host={tmp_path}/db/run&port=5432&passfile={tmp_path}/db/pgpass"
        )
        assert pg.is_running()
        assert pg.pid is not None
        assert pg.uri("other") == uri.replace("/postgres?", "/other?")
        assert (pg.bin_dir / "pg_dump").exists()

        conn = await asyncpg.connect(uri)
        try:
            rows = await conn.fetch(
                "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
                ["max_connections", "fsync", "listen_addresses", "unix_socket_permissions"],
            )
            settings = {r["name"]: r["setting"] for r in rows}
            assert settings == {
                "max_connections": "200",
                "fsync": "on",
                "listen_addresses": "",
                "unix_socket_permissions": "0700",
            }
            assert await conn.fetchval("SHOW server_encoding") == "UTF8"
            await conn.execute("CREATE TABLE kept (id int PRIMARY KEY, note text)")
            await conn.execute("INSERT INTO kept VALUES (1, 'Zoë Müller')")
        finally:
            await conn.close()

        first_pid = pg.pid
        pg.stop()
        assert not pg.is_running()
        assert pg.pid is None
        assert not (pg.pgdata / "postmaster.pid").exists()

        assert pg.start() == uri  # same PGDATA, same socket: no second initdb
        assert pg.pid != first_pid
        assert await _fetchval(uri, "SELECT note FROM kept WHERE id = 1") == "Zoë Müller"
    finally:
        pg.stop()
    assert not pg.is_running()


async def test_postgres_restarts_after_kill_9(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path / "db", fast=True)
    try:
        uri = pg.start()
        assert await _fetchval(uri, "SHOW fsync") == "off"
        # fast keeps synchronous_commit on, so a commit acknowledged before kill -9 survives it.
        assert await _fetchval(uri, "SHOW synchronous_commit") == "on"
        await _fetchval(uri, "CREATE TABLE t AS SELECT 42 AS v")

        # A backend busy in a long query outlives its killed postmaster and keeps shared memory
        # attached; start() must clear it rather than wait for the query to finish.
        busy_conn = await asyncpg.connect(uri)
        busy = asyncio.create_task(busy_conn.fetchval("SELECT count(*) FROM generate_series(1, 10000000000)"))
        await asyncio.sleep(0.3)

        killed = pg.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        # No sleep on purpose: start() must cope with a postmaster that is still dying, a zombie
        # and the stale postmaster.pid it leaves behind.
        t0 = time.monotonic()
        assert pg.start() == uri
        assert time.monotonic() - t0 < 10
        assert pg.pid is not None
        assert pg.pid != killed
        assert await _fetchval(uri, "SELECT v FROM t") == 42
        with pytest.raises((asyncpg.InterfaceError, asyncpg.PostgresError, OSError)):
            await busy
        busy_conn.terminate()

        pg.stop("immediate")  # crash-like stop: next start runs recovery
        assert pg.restart() == uri
        assert await _fetchval(uri, "SELECT v FROM t") == 42
    finally:
        pg.stop()


async def test_postgres_long_data_dir_gets_short_socket_dir(tmp_path: Path) -> None:
    long_dir = tmp_path / ("d" * 60) / ("e" * 60)
    with EmbeddedPostgres(long_dir, fast=True) as pg:
        assert not pg.socket_dir.is_relative_to(long_dir)
        assert len(os.fsencode(pg.socket_dir / ".s.PGSQL.5432")) < 100
        assert await _fetchval(pg.uri(), "SELECT 1") == 1
    assert not pg.is_running()


def test_postgres_adopts_running_server(tmp_path: Path) -> None:
    first = EmbeddedPostgres(tmp_path / "db", fast=True)
    first.start()
    try:
        # A second handle (e.g. `refnet up` after the supervisor was killed) reuses the server.
        second = EmbeddedPostgres(tmp_path / "db", fast=True)
        assert second.start() == first.uri()
        assert second.pid == first.pid
        second.stop()
        assert not first.is_running()
    finally:
        first.stop()


async def test_nats_jetstream_survives_restart_and_kill(tmp_path: Path) -> None:
    srv = EmbeddedNats(tmp_path / "nats")
    try:
        url = srv.start()
        port, monitor_port = srv.port, srv.monitor_port
        assert srv.plain_url == f"nats://127.0.0.1:{port}"
        assert url == f"nats://admin:{srv.credentials('admin')[1]}@127.0.0.1:{port}"
        assert srv.is_running()
        assert srv.pid is not None

        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="EMB", subjects=["emb.>"], storage=StorageType.FILE))
            ack = await js.publish("emb.one", b"kept")
            assert ack.seq == 1
        finally:
            await nc.close()

        first_pid = srv.pid
        assert srv.restart() == url
        assert (srv.port, srv.monitor_port) == (port, monitor_port)
        assert srv.pid != first_pid

        srv.kill()
        assert not srv.is_running()
        assert srv.pid is None
        assert srv.start() == url

        nc = await nats.connect(url)
        try:
            msg = await nc.jetstream().get_msg("EMB", 1)
            assert (msg.subject, msg.data) == ("emb.one", b"kept")
        finally:
            await nc.close()
        assert "Server is ready" in (tmp_path / "nats" / "nats.log").read_text()
    finally:
        srv.stop()
    assert not srv.is_running()


def test_nats_context_manager_and_loopback_only(tmp_path: Path) -> None:
    with EmbeddedNats(tmp_path / "nats") as srv:
        assert srv.port is not None
        assert srv.monitor_port is not None
        pid = srv.pid
        assert pid is not None
        # Both listeners are bound to loopback, not 0.0.0.0.
        listening = _listening_addresses()
        assert f"127.0.0.1:{srv.port}" in listening
        assert f"127.0.0.1:{srv.monitor_port}" in listening
        assert f"0.0.0.0:{srv.port}" not in listening
    assert not srv.is_running()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=1).close()


def test_helpers() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # it really was free
    assert os.access(nats_server_binary(), os.X_OK)


def _listening_addresses() -> set[str]:
    """host:port of every listening IPv4 TCP socket, from /proc/net/tcp."""
    out: set[str] = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] != "0A":  # TCP_LISTEN
            continue
        hex_ip, hex_port = fields[1].split(":")
        ip = socket.inet_ntoa(bytes.fromhex(hex_ip)[::-1])
        out.add(f"{ip}:{int(hex_port, 16)}")
    return out
