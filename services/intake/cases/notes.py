"""Staff-written text about a youth, sealed with the referral's own data key (shredded with it).

A decline's words and a break-glass reason may name the youth or their family, so they never sit in a
plaintext column or an audit row: they are encrypted (AES-256-GCM) under the referral's data key, bound to
the referral and the note's id, in ``referral_notes``; audit rows and assignments refer to the note by
id. When the referral's key is shredded the words become unreadable with it.
"""

from __future__ import annotations

import os
import uuid

import asyncpg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.intake.core.auth import Caller
from services.intake.core.keys import Keys
from shared.db import SYSTEM, load_sql, transaction

__all__ = [
    "DECLINE_CODES",
    "NOTE_REF",
    "drop_as_system",
    "open_as_system",
    "open_note",
    "seal_as_system",
    "seal_note",
    "split_reason",
]

_PKG = "services.intake.cases"
_INSERT_NOTE = load_sql(_PKG, "insert_note")
_NOTE = load_sql(_PKG, "note")
_REFERRAL_DATA_KEY = load_sql(_PKG, "referral_data_key")
_DELETE_NOTE = load_sql(_PKG, "delete_note")
# How a sealed note stands in a text column that used to hold the words (routing_decisions.reason), and
# in the manual-assignment command on the bus (which must carry no PII).
NOTE_REF = "sealed-note:"

# The coded part of a decline (readable, free of PII by design); the web form sends "code: words".
DECLINE_CODES = ("capacity", "needs", "language", "conflict", "other")


def split_reason(reason: str) -> tuple[str, str]:
    """A decline reason as (code, the person's own words): "conflict: I know the family" gives
    ("conflict", "I know the family"); text without a known code is all words, coded "other"."""
    text = reason.strip()
    head, sep, rest = text.partition(":")
    if head.strip() in DECLINE_CODES and (sep or head.strip() == text):
        return head.strip(), rest.strip()
    return "other", text


def _associated(referral_id: str, note_id: str) -> bytes:
    return f"{referral_id}|note|{note_id}".encode()


async def seal_note(
    conn: asyncpg.Connection,
    keys: Keys,
    caller: Caller,
    referral_id: str,
    key_id: str,
    wrapped_key: bytes,
    kind: str,
    text: str,
) -> str:
    """Seal ``text`` under the referral's data key and store it; returns the note's id."""
    note_id = str(uuid.uuid4())
    data_key = keys.unwrap(key_id, wrapped_key, referral_id.encode())
    nonce = os.urandom(12)
    sealed = AESGCM(data_key).encrypt(nonce, text.encode(), _associated(referral_id, note_id))
    await conn.execute(_INSERT_NOTE, note_id, referral_id, kind, nonce, sealed, caller.id)
    return note_id


async def open_note(conn: asyncpg.Connection, keys: Keys, note_id: str) -> str | None:
    """The note's words, or None when there is no such note visible or its referral was shredded."""
    row = await conn.fetchrow(_NOTE, note_id)
    if row is None or row["key_id"] is None:
        return None
    rid = str(row["referral_id"])
    data_key = keys.unwrap(row["key_id"], bytes(row["wrapped_key"]), rid.encode())
    plain = AESGCM(data_key).decrypt(bytes(row["nonce"]), bytes(row["ciphertext"]), _associated(rid, note_id))
    return plain.decode()


async def seal_as_system(
    pool: asyncpg.Pool, keys: Keys, caller: Caller, referral_id: str, kind: str, text: str
) -> str | None:
    """Seal ``text`` for a referral whose key the caller's role may not read (a supervisor's manual
    assignment): the route has authorised them; the note names them as its writer. None: no such
    referral, or its details are already shredded."""
    async with transaction(pool, SYSTEM) as conn:
        key = await conn.fetchrow(_REFERRAL_DATA_KEY, referral_id)
        if key is None:
            return None
        return await seal_note(
            conn, keys, caller, referral_id, key["key_id"], bytes(key["wrapped_key"]), kind, text
        )


async def drop_as_system(pool: asyncpg.Pool, note_id: str) -> None:
    async with transaction(pool, SYSTEM) as conn:
        await conn.execute(_DELETE_NOTE, note_id)


async def open_as_system(pool: asyncpg.Pool, keys: Keys, note_id: str) -> str | None:
    """For a reader the route has authorised (the routing explanation)."""
    async with transaction(pool, SYSTEM) as conn:
        return await open_note(conn, keys, note_id)
