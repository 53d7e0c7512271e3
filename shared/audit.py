"""Tamper-evident audit log: rows appended in the audited transaction, then sealed into a hash chain."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from shared.db import SYSTEM, Identity, load_sql, transaction

__all__ = ["VerifyResult", "record", "seal", "verify"]

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


def _digest(prev: bytes, seq: int, row: asyncpg.Record | dict[str, Any]) -> bytes:
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
    return hashlib.sha256(prev + body).digest()


async def seal(pool: asyncpg.Pool, batch: int = 1000) -> int:
    """Number and chain unsealed rows in id order; returns how many were sealed."""
    async with transaction(pool, SYSTEM) as conn:
        if not await conn.fetchval(load_sql("shared", "audit_seal_lock"), _SEAL_LOCK):
            return 0
        last = await conn.fetchrow(load_sql("shared", "audit_last_sealed"))
        seq, prev = (last["seq"], bytes(last["hash"])) if last else (0, _GENESIS)
        rows = await conn.fetch(load_sql("shared", "audit_unsealed"), batch)
        updates = []
        for row in rows:
            seq += 1
            h = _digest(prev, seq, row)
            updates.append((seq, prev, h, row["id"]))
            prev = h
        if updates:
            await conn.executemany(load_sql("shared", "audit_seal"), updates)
        return len(updates)


class VerifyResult(msgspec.Struct, frozen=True):
    ok: bool
    checked: int
    unsealed: int
    broken_seq: int | None = None
    broken_id: int | None = None
    reason: str = ""


async def verify(conn: asyncpg.Connection) -> VerifyResult:
    """Walk the chain in order and report the first row whose link or content does not match."""
    prev = _GENESIS
    expected_seq = 1
    checked = 0
    async with conn.transaction():
        async for row in conn.cursor(load_sql("shared", "audit_chain")):
            seq = row["seq"]
            if seq != expected_seq:
                return VerifyResult(
                    False, checked, 0, expected_seq, None, f"row with seq {expected_seq} is missing"
                )
            if bytes(row["prev_hash"]) != prev:
                return VerifyResult(
                    False, checked, 0, seq, row["id"], "link to the previous row does not match"
                )
            h = _digest(prev, seq, row)
            if bytes(row["hash"]) != h:
                return VerifyResult(False, checked, 0, seq, row["id"], "content does not match its hash")
            prev = h
            expected_seq += 1
            checked += 1
        unsealed = await conn.fetchval(load_sql("shared", "audit_unsealed_count"))
    return VerifyResult(True, checked, unsealed)
