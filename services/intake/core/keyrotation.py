"""PII master key epochs: rotate (new current key, every data key re-wrapped) and destroy old epochs."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import asyncpg
import msgspec
import structlog

from shared import audit
from shared.config import Settings
from shared.crypto import KeyRing, Sealed, generate_master_key, read_keyring_file, write_keyring_file
from shared.db import Identity, load_sql

__all__ = [
    "BackupRecord",
    "RotationResult",
    "destroyable",
    "epoch_number",
    "key_ids_in_use",
    "ledger_path",
    "read_ledger",
    "record_backup",
    "rotate",
    "rotate_if_due",
]

log = structlog.get_logger("refnet.keys")

_LOCK = 0x6B657973  # "keys"
_sealed_decoder = msgspec.msgpack.Decoder(Sealed)
_sealed_encoder = msgspec.msgpack.Encoder()


class BackupRecord(msgspec.Struct, frozen=True):
    """A backup taken by `refnet backup`: the master keys its data keys were wrapped by."""

    at: str
    file: str
    epochs: list[str]


class RotationResult(msgspec.Struct):
    current: str
    rewrapped: int
    webhook_secrets_rewrapped: int
    destroyed: list[str]
    kept: list[str]  # older keys still in the keyring (a backup still needs them)
    keys: list[str]


def epoch_number(key_id: str) -> int:
    """k7 -> 7; a key id of another shape counts as the oldest epoch."""
    return int(key_id[1:]) if key_id[:1] == "k" and key_id[1:].isdigit() else 0


def destroyable(old: Iterable[str], backups: list[BackupRecord]) -> tuple[list[str], list[str]]:
    """(destroy, keep) among ``old`` master keys: an epoch goes only once a backup exists whose data keys
    are all wrapped by later epochs, so the newest restorable backup never loses its key. With no backup
    recorded at all there is nothing to keep readable."""
    old = sorted(set(old), key=epoch_number)
    if not backups:
        return old, []
    floor = max(min((epoch_number(e) for e in b.epochs), default=math.inf) for b in backups)
    return [k for k in old if epoch_number(k) < floor], [k for k in old if epoch_number(k) >= floor]


def ledger_path(keyring_path: Path) -> Path:
    """Where `refnet backup` records each backup's epochs: beside the keyring, which it is useless without."""
    return keyring_path.with_name(keyring_path.name + ".backups")


def read_ledger(keyring_path: Path) -> list[BackupRecord]:
    try:
        lines = ledger_path(keyring_path).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    out = []
    for line in lines:
        try:
            out.append(msgspec.json.decode(line, type=BackupRecord))
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # a torn last line from a crash
    return out


def record_backup(keyring_path: Path, file: str, epochs: Iterable[str]) -> None:
    record = BackupRecord(datetime.now(UTC).isoformat(), file, sorted(set(epochs), key=epoch_number))
    fd = os.open(ledger_path(keyring_path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, msgspec.json.encode(record) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


async def _as_system(conn: asyncpg.Connection, actor: Identity) -> None:
    await conn.execute(load_sql(__package__, "system_identity"), actor.actor_id)


def _secret_key_ids(row: asyncpg.Record) -> set[str]:
    return {
        _sealed_decoder.decode(bytes(blob)).key_id
        for blob in (row["secret_sealed"], row["previous_secret_sealed"])
        if blob
    }


async def key_ids_in_use(conn: asyncpg.Connection, actor: Identity) -> set[str]:
    """Every master key a live data key or webhook secret is wrapped by (what a dump now would need)."""
    async with conn.transaction():
        await _as_system(conn, actor)
        ids = {r["key_id"] for r in await conn.fetch(load_sql(__package__, "data_key_epochs"))}
        for row in await conn.fetch(load_sql(__package__, "webhook_secrets_locked")):
            ids |= _secret_key_ids(row)
    return ids


async def _rewrap_rows(conn: asyncpg.Connection, ring: KeyRing, rows: list[asyncpg.Record]) -> int:
    updates = []
    for r in rows:
        kid, wrapped = ring.rewrap(r["key_id"], bytes(r["wrapped_key"]), str(r["referral_id"]).encode())
        updates.append((kid, wrapped, r["referral_id"]))
    if updates:
        await conn.executemany(load_sql(__package__, "data_key_rewrapped"), updates)
    return len(updates)


async def _rewrap_secrets(conn: asyncpg.Connection, ring: KeyRing) -> int:
    done = 0
    for r in await conn.fetch(load_sql(__package__, "webhook_secrets_locked")):
        aad = str(r["id"]).encode()
        new: list[bytes | None] = []
        for blob in (r["secret_sealed"], r["previous_secret_sealed"]):
            if not blob:
                new.append(None if blob is None else blob)
                continue
            sealed = _sealed_decoder.decode(bytes(blob))
            key_id, wrapped = ring.rewrap(sealed.key_id, sealed.wrapped_key, aad)
            new.append(_sealed_encoder.encode(Sealed(key_id, wrapped, sealed.nonce, sealed.ciphertext)))
        await conn.execute(load_sql(__package__, "webhook_secrets_rewrapped"), r["id"], new[0], new[1])
        done += 1
    return done


async def rotate(
    conn: asyncpg.Connection,
    keyring_path: Path,
    actor: Identity,
    *,
    destroy_previous: bool = False,
    batch: int = 500,
) -> RotationResult | None:
    """Add a new epoch key as current, re-wrap every data key and webhook secret under it, and with
    ``destroy_previous`` delete the older epoch keys that no recorded backup still needs.

    None when another rotation holds the lock. Order matters for safety: the keyring file gains the new
    key before anything is wrapped by it, and loses an old one only after the database has marked it
    destroyed and holds nothing wrapped by it.
    """
    if not await conn.fetchval(load_sql(__package__, "key_rotation_lock"), _LOCK):
        return None
    try:
        doc = read_keyring_file(keyring_path)
        new_id = f"k{max((epoch_number(k) for k in doc.keys), default=0) + 1}"
        doc.keys[new_id] = generate_master_key()
        doc.current = new_id
        write_keyring_file(keyring_path, doc)
        ring = KeyRing(doc.keys, new_id)
        async with conn.transaction():
            await _as_system(conn, actor)
            await conn.execute(load_sql(__package__, "key_epochs_register"), sorted(doc.keys))
        rewrapped = 0
        while True:
            async with conn.transaction():
                await _as_system(conn, actor)
                rows = await conn.fetch(load_sql(__package__, "data_keys_to_rewrap"), new_id, batch)
                if not rows:
                    break
                rewrapped += await _rewrap_rows(conn, ring, rows)
        destroyed: list[str] = []
        kept = [k for k in doc.keys if k != new_id]
        async with conn.transaction():
            await _as_system(conn, actor)
            if destroy_previous:
                destroyed, kept = destroyable(kept, read_ledger(keyring_path))
            if destroyed:
                # Marked first: this waits for sealers that already passed the epoch check; what they
                # wrote is re-wrapped just below, and any later one is refused by the trigger.
                await conn.execute(load_sql(__package__, "key_epochs_destroy"), destroyed)
                rows = await conn.fetch(load_sql(__package__, "data_keys_of_epochs"), destroyed)
                rewrapped += await _rewrap_rows(conn, ring, rows)
            secrets = await _rewrap_secrets(conn, ring)
            await audit.record(
                conn,
                actor,
                "keys.rotate",
                "master_key",
                new_id,
                {"rewrapped": rewrapped, "webhook_secrets_rewrapped": secrets, "destroyed": destroyed},
            )
        if destroyed:
            for k in destroyed:
                del doc.keys[k]
            write_keyring_file(keyring_path, doc)
        log.info("keys.rotated", current=new_id, rewrapped=rewrapped, destroyed=destroyed, kept=kept)
        return RotationResult(new_id, rewrapped, secrets, destroyed, kept, sorted(doc.keys, key=epoch_number))
    finally:
        await conn.execute(load_sql(__package__, "key_rotation_unlock"), _LOCK)


async def rotate_if_due(pool: asyncpg.Pool, settings: Settings) -> RotationResult | None:
    """The scheduled rotation: once the current epoch is ``key_rotation_hours`` old, rotate and destroy
    what the backup rule allows. Needs a writable keyring file (``REFNET_PII_KEYRING_FILE``)."""
    if settings.key_rotation_hours <= 0 or not settings.pii_keyring_file:
        return None
    path = Path(settings.pii_keyring_file)
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        return None
    actor = Identity(role="system", actor_id="key-rotation")
    async with pool.acquire() as proxy:
        conn = cast(asyncpg.Connection, proxy)  # a pool proxy behaves as a Connection
        doc = read_keyring_file(path)
        async with conn.transaction():
            await _as_system(conn, actor)
            # The clock of a keyring never rotated before starts now.
            await conn.execute(load_sql(__package__, "key_epochs_register"), sorted(doc.keys))
            began = await conn.fetchval(load_sql(__package__, "key_epoch_created"), doc.current)
        if began is None or datetime.now(UTC) - began < timedelta(hours=settings.key_rotation_hours):
            return None
        return await rotate(conn, path, actor, destroy_previous=True)
