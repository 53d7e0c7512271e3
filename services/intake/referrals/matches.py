"""One youth across referrals: probable matches recorded at intake, shown to staff, linked or dismissed.

Recording runs inside the referral's own transaction (so routing, which reads the matches for
continuity, never sees a referral without them). Partners never read matches: the referrer's identity
may insert them, nothing more, and no partner-facing view or event mentions them.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg
import msgspec
import structlog

from services.intake.core.auth import Caller
from services.intake.core.problems import Problem
from services.intake.referrals.matching import Token, score
from shared import audit
from shared.db import load_sql

__all__ = ["BlindRows", "MatchView", "decide", "list_matches", "record_matches"]

log = structlog.get_logger("refnet.intake")

_PKG = "services.intake.referrals"
_YOUTH_CANDIDATES = load_sql(_PKG, "youth_candidates")
_INSERT_YOUTH_MATCH = load_sql(_PKG, "insert_youth_match")
_YOUTH_MATCHES_OF = load_sql(_PKG, "youth_matches_of")
_DECIDE_YOUTH_MATCH = load_sql(_PKG, "decide_youth_match")
_STAFF_ROLES = ("case_manager", "supervisor", "admin")
# youth_blind's columns in the order youth_candidates.sql takes them ($2-$6).
_ONE_PER_REFERRAL = ("dob", "exact", "phone", "first", "last")


class MatchView(msgspec.Struct, kw_only=True):
    """What staff see of a probable match: the other referral's routing facts and who holds it, no PII."""

    id: str
    other_referral_id: str
    other_status: str
    other_region: str | None
    other_received_at: datetime
    holder: str | None
    score: float
    reasons: list[str]
    status: str
    found_at: datetime


class BlindRows(msgspec.Struct):
    """Referrals' blind indexes as youth_candidates.sql takes them: one element per referral for each kind
    but the trigrams (at most one token of each), the trigrams flattened with their referral's place."""

    rids: list[str]
    columns: dict[str, list[bytes | None]]
    tri_places: list[int]
    tris: list[bytes]
    mine_tri: list[int]

    @classmethod
    def of(cls, referrals: list[tuple[str, list[Token]]]) -> BlindRows:
        rows = cls([], {kind: [] for kind in _ONE_PER_REFERRAL}, [], [], [])
        for referral_id, tokens in referrals:
            if not tokens:  # no youth-key secret: nothing to match on
                continue
            rows.rids.append(referral_id)
            by_kind = {t.kind: t.value for t in tokens if t.kind != "first_tri"}
            for kind, column in rows.columns.items():
                column.append(by_kind.get(kind))
            trigrams = [t.value for t in tokens if t.kind == "first_tri"]
            rows.tri_places.extend([len(rows.rids)] * len(trigrams))
            rows.tris.extend(trigrams)
            rows.mine_tri.append(len(trigrams))
        return rows

    def args(self) -> tuple[object, ...]:
        """$1-$8 of youth_candidates.sql (and refnet_youth_candidates_many)."""
        return (self.rids, *self.columns.values(), self.tri_places, self.tris)


async def record_matches(conn: asyncpg.Connection, referrals: list[tuple[str, list[Token]]]) -> int:
    """Store the referrals' blind indexes and their probable matches, in the caller's transaction: one
    statement for all of them (a caller's referrals in a group commit), each matched as if stored
    alone after the ones before it in `referrals` (refnet_youth_candidates_many)."""
    blind = BlindRows.of(referrals)
    if not blind.rids:
        return 0
    rids, mine_tri = blind.rids, blind.mine_tri
    found: list[tuple[uuid.UUID, str, uuid.UUID, float, str]] = []
    per_referral: dict[str, int] = {}
    for r in await conn.fetch(_YOUTH_CANDIDATES, *blind.args()):
        n = r["i"] - 1
        match = score(frozenset(r["shared"]), r["shared_tri"], mine_tri[n], r["their_tri"])
        if match is not None:
            found.append((uuid.uuid4(), rids[n], r["other"], match.score, ",".join(match.reasons)))
            per_referral[rids[n]] = per_referral.get(rids[n], 0) + 1
    if found:
        # One statement for all of them, as columns (executemany would execute once per match).
        await conn.execute(_INSERT_YOUTH_MATCH, *(list(column) for column in zip(*found, strict=True)))
        for referral_id, matches in per_referral.items():
            # Ids only: which referrals, never why in terms of the youth's details.
            log.info("youth.possible_match", referral_id=referral_id, matches=matches)
    return len(found)


def _view(r: asyncpg.Record) -> MatchView:
    return MatchView(
        id=str(r["match_id"]),
        other_referral_id=str(r["other"]),
        other_status=r["other_status"],
        other_region=r["other_region"],
        other_received_at=r["other_received_at"],
        holder=r["holder"],
        score=float(r["score"]),
        reasons=list(r["reasons"]),
        status=r["status"],
        found_at=r["found_at"],
    )


def _rid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Problem(404, "No such referral.") from None


async def _visible(conn: asyncpg.Connection, caller: Caller, referral_id: str) -> uuid.UUID:
    """The referral, if the caller may see it (else 404, whether or not it exists)."""
    rid = uuid.UUID(_rid(referral_id))
    if caller.kind != "staff" or caller.role not in _STAFF_ROLES:
        raise Problem(404, "No such referral.")
    # Imported here: the referral service records matches through this module at intake.
    from services.intake.referrals.service import visible_referrals

    if not await visible_referrals(conn, caller, referral_id=rid):
        raise Problem(404, "No such referral.")
    return rid


async def list_matches(conn: asyncpg.Connection, caller: Caller, referral_id: str) -> list[MatchView]:
    """The referral's probable matches, for staff who may see the referral (others: 404)."""
    rid = await _visible(conn, caller, referral_id)
    rows = await conn.fetch(_YOUTH_MATCHES_OF, rid)
    return [_view(r) for r in rows]


async def decide(
    conn: asyncpg.Connection, caller: Caller, referral_id: str, match_id: str, verdict: str
) -> MatchView:
    """Link (the same youth) or dismiss (not the same youth) a match; audited."""
    if caller.kind != "staff" or caller.role not in _STAFF_ROLES:
        raise Problem(403, "Only staff link or dismiss possible matches.")
    if verdict not in ("linked", "dismissed"):
        raise Problem(422, "Unknown verdict.", errors=[{"field": "verdict", "message": "link or dismiss"}])
    rid = str(await _visible(conn, caller, referral_id))
    try:
        mid = str(uuid.UUID(match_id))
    except ValueError:
        raise Problem(404, "No such match.") from None
    row = await conn.fetchrow(_DECIDE_YOUTH_MATCH, mid, rid, verdict, caller.id)
    if row is None:
        raise Problem(404, "No such match.")
    await audit.record(
        conn,
        caller.identity,
        f"youth_match.{'link' if verdict == 'linked' else 'dismiss'}",
        "youth_match",
        mid,
        {"referral_id": str(row["referral_id"]), "other_referral_id": str(row["other_referral_id"])},
    )
    for view in await list_matches(conn, caller, rid):
        if view.id == mid:
            return view
    raise Problem(404, "No such match.")
