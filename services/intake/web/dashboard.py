"""The admin dashboard's charts, drawn from the dashboard figures in the reader's language."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.intake.admin.schemas import DashboardFigures
from services.intake.web import charts
from services.intake.web.i18n import code, t
from services.intake.web.render import format_duration
from shared.casework import LOCAL_TZ
from shared.regions import Region

__all__ = ["dashboard_charts"]


def _compact(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"


def dashboard_charts(lang: str, f: DashboardFigures, regions: Sequence[Region]) -> dict[str, Any]:
    hours = [p.start.astimezone(LOCAL_TZ).strftime("%H:00") for p in f.last_24h]
    timeline = charts.line_chart(
        "timeline",
        t(lang, "dash.timeline"),
        hours,
        [
            (t(lang, "dash.received"), [p.received for p in f.last_24h]),
            (t(lang, "dash.assigned"), [p.assigned for p in f.last_24h]),
            (t(lang, "dash.unroutable"), [p.unroutable for p in f.last_24h]),
        ],
    )

    def hist(uid: str, title_key: str, d: Any) -> Any:
        # Compact upper bounds ("0.5s", "5m", "1h"); the last bucket is everything above the last bound.
        labels = [
            _compact(b.le) if b.le is not None else ">" + _compact(d.histogram[-2].le) for b in d.histogram
        ]
        return charts.histogram(
            uid,
            t(lang, title_key),
            [(label, b.count) for label, b in zip(labels, d.histogram, strict=True)],
            p50=format_duration(d.p50_seconds, lang) if d.count else None,
            p90=format_duration(d.p90_seconds, lang) if d.count else None,
        )

    region_names = {"out_of_area": t(lang, "map.out_of_area"), **{r.code: r.name for r in regions}}
    return {
        "status_chart": charts.bar_chart(
            "by-status",
            t(lang, "dash.totals"),
            [(code(lang, "status", s), n) for s, n in sorted(f.referrals_by_status.items())],
        ),
        "timeline_chart": timeline,
        "timeline_rows": [
            (label, p.received, p.assigned, p.unroutable) for label, p in zip(hours, f.last_24h, strict=True)
        ],
        "tta_chart": hist("tta", "dash.tta", f.time_to_assignment),
        "ttacc_chart": hist("ttacc", "dash.ttacc", f.time_to_acceptance),
        "region_chart": charts.bar_chart(
            "by-region",
            t(lang, "dash.per_region"),
            [(region_names.get(r, r.replace("_", " ")), n) for r, n in f.referrals_by_region.items()],
        ),
        "partner_chart": charts.bar_chart(
            "by-partner", t(lang, "dash.per_partner"), [(p.name, p.count) for p in f.referrals_by_partner]
        ),
        "utilisation_chart": charts.bar_chart(
            "utilisation",
            t(lang, "dash.utilisation"),
            [
                (c.name, round(100 * c.active / c.capacity) if c.capacity else 0)
                for c in f.utilisation.case_managers
            ],
            unit="%",
            maximum=100,
        ),
    }
