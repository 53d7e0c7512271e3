"""Evaluator endpoints: the de-identified export (CSV or JSON) and the suppressed aggregate report; audited."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from litestar import Controller, Request, Response, get
from litestar.openapi.datastructures import ResponseSpec

from services.intake.auth import require_staff, resolve_caller
from services.intake.evaluation.cohort import load_cohort, load_provenance
from services.intake.evaluation.report import ExportRow, Report, build_report, export_csv, export_rows
from shared import audit
from shared.db import transaction

__all__ = ["EvaluationController"]

# Exports are never cached anywhere on the way (browsers, proxies).
_NO_STORE = {"Cache-Control": "no-store"}


class ExportDocument(msgspec.Struct, kw_only=True):
    generated_at: datetime
    # Pseudonyms are HMACs under a salt made for this export alone: they link rows of one youth within
    # this export and nothing across exports.
    pseudonyms: str = "per-export"
    rows: list[ExportRow]


class EvaluationController(Controller):
    path = "/v1/evaluation"
    tags = ["evaluation"]
    guards = [require_staff("evaluator", "admin")]

    @get(
        "/export",
        summary="One de-identified row per youth and referral: pseudonymous per export, age bands, region,"
        " coded intake attributes, intervention counts, outcomes by follow-up (audited)",
        # Documented as the JSON form; ?format=csv returns the same rows flattened, as text/csv.
        responses={
            200: ResponseSpec(
                data_container=ExportDocument,
                description="?format=json: this document; ?format=csv (default): the rows as text/csv with"
                " a header line (needs, interventions and outcomes flattened into columns).",
            )
        },
    )
    async def export(
        self, request: Request[Any, Any, Any], format: Literal["csv", "json"] = "csv"
    ) -> Response[Any]:
        caller = await resolve_caller(request)
        now = datetime.now(UTC)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            rows = export_rows(await load_cohort(conn), secrets.token_bytes(32), now)
            await audit.record(
                conn,
                caller.identity,
                "evaluation.export",
                "evaluation",
                "",
                {"format": format, "rows": len(rows)},
            )
        if format == "csv":
            return Response(
                content=export_csv(rows).encode(),
                media_type="text/csv; charset=utf-8",
                headers={
                    **_NO_STORE,
                    "Content-Disposition": f'attachment; filename="refnet-evaluation-{now:%Y%m%dT%H%M%SZ}.csv"',
                },
            )
        return Response(content=ExportDocument(generated_at=now, rows=rows), headers=_NO_STORE)

    @get(
        "/report",
        summary="Aggregates with small-cell suppression: referrals by source and region, time to first"
        " contact, recidivism by intervention combination with Wilson 95% intervals (audited)",
    )
    async def report(self, request: Request[Any, Any, Any]) -> Response[Report]:
        caller = await resolve_caller(request)
        async with transaction(request.app.state.pool, caller.identity) as conn:
            report = build_report(await load_cohort(conn), datetime.now(UTC), await load_provenance(conn))
            await audit.record(conn, caller.identity, "evaluation.report", "evaluation", "", {})
        return Response(content=report, headers=_NO_STORE)
