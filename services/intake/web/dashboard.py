"""The admin dashboard's charts and tables, drawn from the dashboard figures in the reader's language."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.intake.admin.schemas import DashboardFigures, Window
from services.intake.web import charts
from services.intake.web.i18n import code, region_label, t
from services.intake.web.render import format_duration
from shared.casework import LOCAL_TZ
from shared.regions import Region

__all__ = ["WINDOW_CHOICES", "dashboard_charts"]

# The window selector's choices, in order (the figures' `window`).
WINDOW_CHOICES: tuple[Window, ...] = ("24h", "7d", "30d", "all")
_BUCKET_FORMAT = {"hour": "%H:00", "day": "%m-%d", "month": "%Y-%m"}


def _compact(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g}s"
    if seconds < 3600:
        return f"{seconds / 60:g}m"
    return f"{seconds / 3600:g}h"


def dashboard_charts(lang: str, f: DashboardFigures, regions: Sequence[Region]) -> dict[str, Any]:
    window = code(lang, "window", f.window)
    fmt = _BUCKET_FORMAT[f.timeline_bucket]
    points = [p.start.astimezone(LOCAL_TZ).strftime(fmt) for p in f.timeline]
    timeline_title = t(lang, "dash.timeline", window=window)
    timeline = charts.line_chart(
        "timeline",
        timeline_title,
        points,
        [
            (t(lang, "dash.received"), [p.received for p in f.timeline]),
            (t(lang, "dash.assigned"), [p.assigned for p in f.timeline]),
            (t(lang, "dash.unroutable"), [p.unroutable for p in f.timeline]),
        ],
        tick_every=max(1, len(points) // 8),
    )

    def hist(uid: str, title_key: str, d: Any) -> Any:
        # Compact upper bounds ("0.5s", "5m", "1h"); the last bucket is everything above the last bound.
        labels = [
            _compact(b.le) if b.le is not None else ">" + _compact(d.histogram[-2].le) for b in d.histogram
        ]
        return charts.histogram(
            uid,
            t(lang, title_key, window=window),
            [(label, b.count) for label, b in zip(labels, d.histogram, strict=True)],
            p50=format_duration(d.p50_seconds, lang) if d.count else None,
            p90=format_duration(d.p90_seconds, lang) if d.count else None,
        )

    region_names = {
        "out_of_area": t(lang, "map.out_of_area"),
        **{r.code: region_label(lang, r.code, r.name) for r in regions},
    }
    regions_rows = [(region_names.get(r, r.replace("_", " ")), n) for r, n in f.referrals_by_region.items()]
    need_rows = [
        (
            code(lang, "need", n.need),
            n.count,
            n.assigned,
            format_duration(n.tta_p50_seconds, lang),
            format_duration(n.tta_p90_seconds, lang),
        )
        for n in f.referrals_by_need
    ]
    return {
        "window": f.window,
        "window_label": window,
        "windows": [(w, code(lang, "window", w)) for w in WINDOW_CHOICES],
        "timeline_title": timeline_title,
        "timeline_chart": timeline,
        "timeline_rows": [
            (label, p.received, p.assigned, p.unroutable) for label, p in zip(points, f.timeline, strict=True)
        ],
        "tta_chart": hist("tta", "dash.tta", f.time_to_assignment),
        "ttacc_chart": hist("ttacc", "dash.ttacc", f.time_to_acceptance),
        "region_chart": charts.bar_chart(
            "by-region", t(lang, "dash.per_region", window=window), regions_rows
        ),
        "region_rows": regions_rows,
        "need_chart": charts.bar_chart(
            "by-need", t(lang, "dash.per_need", window=window), [(row[0], row[1]) for row in need_rows]
        ),
        "need_rows": need_rows,
        "partner_chart": charts.bar_chart(
            "by-partner",
            t(lang, "dash.per_partner", window=window),
            [(p.name, p.count) for p in f.referrals_by_partner],
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
