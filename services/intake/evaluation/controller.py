"""Evaluator endpoints: the de-identified export (CSV or JSON) and the suppressed aggregate report; audited."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec

from services.intake.core.auth import Caller, require_staff
from services.intake.evaluation import service
from services.intake.evaluation.report import Report, export_csv
from services.intake.evaluation.service import ExportDocument

__all__ = ["EvaluationController"]

# Exports are never cached anywhere on the way (browsers, proxies).
_NO_STORE = {"Cache-Control": "no-store"}


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
        self, caller: Caller, conn: asyncpg.Connection, format: Literal["csv", "json"] = "csv"
    ) -> Response[Any]:
        now = datetime.now(UTC)
        rows = await service.export(conn, caller, format, now)
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
        summary="The evaluation report, suppressed as one release (no count from 1 to 10): outcomes by every"
        " collected variable (by_variable), Kaplan-Meier survival, adjusted hazard ratios with a power note,"
        " and the earlier tables; youth whose consent covers `evaluation` only (audited)",
    )
    async def report(self, caller: Caller, conn: asyncpg.Connection) -> Response[Report]:
        return Response(content=await service.report(conn, caller), headers=_NO_STORE)
