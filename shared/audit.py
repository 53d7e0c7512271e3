"""Tamper-evident audit log: rows appended in the audited transaction, sealed into a keyed chain, anchored outside."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import structlog

from shared.config import Settings
from shared.db import SYSTEM, Identity, load_sql, transaction

__all__ = [
    "Anchor",
    "AuditKeyError",
    "VerifyResult",
    "anchor_path",
    "load_key",
    "read_anchors",
    "record",
    "seal",
    "verify",
]

log = structlog.get_logger("refnet.audit")

_SEAL_LOCK = 0x61756469  # one sealer at a time across all processes
_GENESIS = b"\x00" * 32
_encoder = msgspec.json.Encoder(order="sorted")


async def record(
    conn: asyncpg.Connection,
    identity: Identity,
    action: str,
    target_type: str = "",
    target_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append an audit row inside the caller's transaction: the act and its record commit together.

    ``detail`` must hold ids and codes, never PII (the audit log is read by admins).
    """
    await conn.execute(
        load_sql("shared", "audit_insert"),
        identity.role,
        identity.actor_id,
        identity.partner_id,
        action,
        target_type,
        target_id or "",
        # Encoded here (not by a connection codec) so any connection, pooled or not, can audit.
        msgspec.json.encode(detail or {}).decode(),
    )


class AuditKeyError(RuntimeError):
    """No audit key where one must already exist (verification never invents one)."""


def _key_file(settings: Settings) -> Path:
    return Path(settings.data_dir) / "secrets" / "audit_key"


def load_key(settings: Settings, *, create: bool = False) -> bytes:
    """The chain's HMAC key: REFNET_AUDIT_KEY (or _FILE), else DATA_DIR/secrets/audit_key.

    Kept outside the database on purpose: whoever can rewrite audit_log (a database superuser, a
    restored dump) cannot recompute a chain that verifies without it. ``create`` (the sealer) makes
    the file (0600) on first use; the verifier never does.
    """
    if settings.audit_key:
        return settings.audit_key.encode()
    path = _key_file(settings)
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(base64.urlsafe_b64encode(os.urandom(32)).decode() + "\n")
    try:
        key = path.read_text().strip()
    except OSError:
        raise AuditKeyError(f"no audit key: set REFNET_AUDIT_KEY or provide {path}") from None
    if not key:
        raise AuditKeyError(f"the audit key file {path} is empty")
    return key.encode()


def anchor_path(settings: Settings) -> Path:
    """The append-only file of chain heads: REFNET_AUDIT_ANCHOR_FILE, else DATA_DIR/audit/anchors.log."""
    return Path(settings.audit_anchor_file or Path(settings.data_dir) / "audit" / "anchors.log")


class Anchor(msgspec.Struct, frozen=True):
    """The chain head at one moment, as written outside the database after a sealing batch."""

    seq: int
    hash: str  # hex
    at: str = ""
    # The head of a chain sealed before the chain was keyed (unkeyed SHA-256), pinned by the first keyed
    # sealer: rows up to it verify by that digest, and can no longer be rewritten unseen either.
    legacy: bool = False


def _append_anchor(path: Path, seq: int, head: bytes, *, legacy: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = msgspec.json.encode(Anchor(seq, head.hex(), datetime.now(UTC).isoformat(), legacy)) + b"\n"
    # O_APPEND: concurrent sealers' lines never interleave; fsync: an anchor that a crash could lose
    # would let the rows after the previous one vanish unnoticed.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _missing(path: Path) -> bool:
    return not path.exists()


def read_anchors(path: Path) -> list[Anchor]:
    """Every anchor in the file (none when it does not exist); a torn last line is ignored."""
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    anchors = []
    for line in lines:
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            anchors.append(msgspec.json.decode(line, type=Anchor))
    return anchors


def _body(seq: int, row: asyncpg.Record | dict[str, Any]) -> bytes:
    at: datetime = row["at"]
    body = _encoder.encode(
        [
            seq,
            row["id"],
            at.isoformat(),
            row["actor_role"],
            row["actor_id"],
            row["partner_id"],
            row["action"],
            row["target_type"],
            row["target_id"],
            row["detail_text"],
        ]
    )
    return body


def _digest(key: bytes, prev: bytes, seq: int, row: asyncpg.Record | dict[str, Any]) -> bytes:
    return hmac.new(key, prev + _body(seq, row), hashlib.sha256).digest()


def _legacy_digest(prev: bytes, seq: int, row: asyncpg.Record | dict[str, Any]) -> bytes:
    """The unkeyed SHA-256 link of chains sealed before the key existed (verification of old rows only)."""
    return hashlib.sha256(prev + _body(seq, row)).digest()


async def seal(pool: asyncpg.Pool, key: bytes, batch: int = 1000, anchors: Path | None = None) -> int:
    """Number and chain unsealed rows in id order, keyed by ``key``; after the commit append the new
    head to ``anchors``; returns how many were sealed."""
    updates: list[tuple[int, bytes, bytes, int]] = []
    legacy_head: tuple[int, bytes] | None = None
    first_anchor = anchors is not None and _missing(anchors)
    async with transaction(pool, SYSTEM) as conn:
        if not await conn.fetchval(load_sql("shared", "audit_seal_lock"), _SEAL_LOCK):
            return 0
        last = await conn.fetchrow(load_sql("shared", "audit_last_sealed"))
        # First keyed sealing after an upgrade: pin the unkeyed chain's head before extending it.
        if (
            last is not None
            and first_anchor
            and _legacy_digest(bytes(last["prev_hash"]), last["seq"], last) == bytes(last["hash"])
        ):
            legacy_head = (last["seq"], bytes(last["hash"]))
        seq, prev = (last["seq"], bytes(last["hash"])) if last else (0, _GENESIS)
        rows = await conn.fetch(load_sql("shared", "audit_unsealed"), batch)
        for row in rows:
            seq += 1
            h = _digest(key, prev, seq, row)
            updates.append((seq, prev, h, row["id"]))
            prev = h
        if updates:
            seqs, prevs, hashes, ids = (list(column) for column in zip(*updates, strict=True))
            await conn.execute(load_sql("shared", "audit_seal"), seqs, prevs, hashes, ids)
    # Only after the commit: an anchor must never name a head the database does not hold. A failed write
    # does not stop sealing (the keyed chain still holds); the next batch anchors a later head.
    if anchors is not None and (updates or legacy_head):
        try:
            if legacy_head is not None:
                _append_anchor(anchors, *legacy_head, legacy=True)
            if updates:
                _append_anchor(anchors, updates[-1][0], updates[-1][2])
        except OSError as exc:
            log.error("audit.anchor_failed", path=str(anchors), error=exc.strerror or type(exc).__name__)
    return len(updates)


class VerifyResult(msgspec.Struct, frozen=True):
    ok: bool
    checked: int
    unsealed: int
    broken_seq: int | None = None
    broken_id: int | None = None
    reason: str = ""
    anchors_checked: int = 0


def _check_row(
    key: bytes, prev: bytes, expected_seq: int, row: asyncpg.Record, anchor: Anchor | None, legacy: bool
) -> tuple[int, int | None, str] | None:
    """(seq, row id, reason) when this row breaks the chain, else None."""
    seq = row["seq"]
    if seq != expected_seq:
        return expected_seq, None, f"row with seq {expected_seq} is missing"
    if bytes(row["prev_hash"]) != prev:
        return seq, row["id"], "link to the previous row does not match"
    h = _legacy_digest(prev, seq, row) if legacy else _digest(key, prev, seq, row)
    if bytes(row["hash"]) != h:
        return (
            seq,
            row["id"],
            "content does not match its keyed hash: this row or one before it was deleted, inserted or"
            " changed and the chain recomputed without the audit key",
        )
    if anchor is not None and anchor.hash != h.hex():
        return seq, row["id"], f"differs from the anchor written at {anchor.at}"
    return None


async def verify(conn: asyncpg.Connection, key: bytes, anchors: list[Anchor] | None = None) -> VerifyResult:
    """Walk the chain in order and report the first row whose link, keyed hash or anchor does not match,
    or the anchored rows that are gone from the end."""
    by_seq = {a.seq: a for a in anchors or []}
    legacy_until = max((a.seq for a in anchors or [] if a.legacy), default=0)
    prev = _GENESIS
    expected_seq = 1
    checked = anchored = 0
    last_anchor = 0  # the newest anchored head that matched: everything up to it is as it was
    async with conn.transaction():
        async for row in conn.cursor(load_sql("shared", "audit_chain")):
            seq = row["seq"]
            problem = _check_row(key, prev, expected_seq, row, by_seq.get(seq), seq <= legacy_until)
            if problem is not None:
                at, row_id, reason = problem
                since = f"; intact up to the anchor at seq {last_anchor}" if last_anchor else ""
                return VerifyResult(False, checked, 0, at, row_id, reason + since, anchored)
            prev = bytes(row["hash"])
            if seq in by_seq:
                anchored += 1
                last_anchor = seq
            expected_seq += 1
            checked += 1
        unsealed = await conn.fetchval(load_sql("shared", "audit_unsealed_count"))
    head = max(by_seq, default=0)
    if head >= expected_seq:
        return VerifyResult(
            False,
            checked,
            unsealed,
            expected_seq,
            None,
            f"sealed rows {expected_seq}..{head} are missing: the anchor file recorded the chain head at seq"
            f" {head} ({by_seq[head].at})",
            anchored,
        )
    return VerifyResult(True, checked, unsealed, anchors_checked=anchored)
