"""The evaluation report as one self-contained HTML page (Jinja template, inline SVG charts, works offline).

Only the published (suppressed) report is used, so the page reveals nothing the JSON does not; every
chart comes from the web app's one chart module and is followed by the table of its numbers.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from services.intake.evaluation.findings import findings
from services.intake.evaluation.report import LevelRate, RateRow, Report
from services.intake.evaluation.suppression import SUPPRESSED, Shown
from services.intake.evaluation.survival import Curve
from services.intake.evaluation.texts import LANGUAGES, label, prose, text
from services.intake.web import charts

__all__ = ["render_body", "render_html"]


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # A curve worth drawing has a point after day 0 (else the suppression stopped it there).
    env.tests["longer_than_one"] = lambda days: len(days) > 1
    return env


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _curve(name: str, curve: Curve) -> tuple[str, list[float], list[float], list[float], list[float]]:
    return (
        name,
        [float(t) for t in curve.time_days],
        curve.survival,
        curve.ci_low,
        curve.ci_high,
    )


def _rates(
    rows: list[LevelRate] | list[RateRow], lang: str
) -> list[tuple[str, float | None, float | None, float | None]]:
    out = []
    for r in rows:
        code = r.level if isinstance(r, LevelRate) else r.label
        out.append((label(code, lang), r.rate, r.ci_low, r.ci_high))
    return out


def _charts(report: Report, lang: str) -> dict[str, Markup]:
    missing = text("not_shown", lang)
    out: dict[str, Markup] = {}
    out["adjusted"] = charts.interval_chart(
        "adjusted",
        text("adjusted", lang),
        [(label(t.term, lang), t.ratio, t.ci_low, t.ci_high) for t in report.adjusted.terms],
        log=True,
        reference=1.0,
        percent=False,
        missing=text("not estimated", lang),
    )
    surv = report.survival
    out["survival_overall"] = charts.step_chart(
        "surv-all",
        text("survival", lang),
        [_curve(label("all", lang), surv.overall)],
        x_label=text("days", lang),
    )
    out["survival_prior"] = charts.step_chart(
        "surv-prior",
        text("survival_by_prior", lang),
        [_curve(label(k, lang), c) for k, c in surv.by_prior_services.items()],
        x_label=text("days", lang),
    )
    for family, curve in surv.by_intervention_family.items():
        out[f"survival_{family}"] = charts.step_chart(
            f"surv-{family}",
            label(family, lang),
            [
                _curve(label("received", lang), curve),
                _curve(label("not received", lang), surv.without_intervention_family[family]),
            ],
            x_label=text("days", lang),
        )
    for variable, rows in report.by_variable.items():
        out[f"var_{variable}"] = charts.interval_chart(
            f"var-{variable}", label(variable, lang), _rates(rows, lang), missing=missing
        )
    for variable, rows in report.engagement_by_variable.items():
        out[f"eng_{variable}"] = charts.interval_chart(
            f"eng-{variable}", label(variable, lang), _rates(rows, lang), missing=missing
        )
    fam_rows = []
    for fam in report.recidivism_by_family:
        for row, which in ((fam.received, "received"), (fam.not_received, "not received")):
            fam_rows.append(
                (f"{label(fam.family, lang)} — {label(which, lang)}", row.rate, row.ci_low, row.ci_high)
            )
    out["families"] = charts.interval_chart("families", text("by_family", lang), fam_rows, missing=missing)
    src = report.referrals_by_source
    out["sources"] = charts.bar_chart(
        "sources",
        text("sources", lang),
        [(label(r, lang), _number(src.row_totals[i])) for i, r in enumerate(src.rows)],
        missing=text("suppressed", lang),
    )
    hist = report.time_to_first_contact_histogram
    out["contact"] = charts.bar_chart(
        "contact",
        text("contact", lang),
        [(r, _number(hist.row_totals[i])) for i, r in enumerate(hist.rows)],
        missing=text("suppressed", lang),
    )
    for series in report.outcomes_by_followup:
        out[f"outcome_{series.measure}"] = charts.interval_chart(
            f"outcome-{series.measure}",
            label(series.measure, lang),
            _rates(series.rows, lang),
            missing=missing,
        )
    return out


def _number(value: Shown) -> float | None:
    return None if value == SUPPRESSED else float(value)


def _context(report: Report, lang: str) -> dict[str, Any]:
    everyone = next((c for c in report.time_to_first_contact if c.label == "All regions"), None)
    period = (
        f"{report.period_start} \u2013 {report.period_end}"
        if report.period_start
        else text("no_referrals", lang)
    )

    def number(value: Shown) -> str:
        return text("suppressed", lang) if value == SUPPRESSED else f"{value:,}"

    def interval(row: Any) -> str:
        if row.rate is None or row.ci_low is None or row.ci_high is None:
            return text("not_shown", lang)
        return f"{_pct(row.rate)} ({_pct(row.ci_low)}\u2013{_pct(row.ci_high)})"

    return {
        "report": report,
        "lang": lang,
        "period": period,
        "median": everyone.median_days if everyone else None,
        "found": findings(report, lang),
        "power": {p.term: p for p in report.adjusted.power},
        "charts": _charts(report, lang),
        "T": lambda key, **kw: text(key, lang, **kw),
        "X": lambda paragraph: prose(paragraph, lang),
        "L": lambda code: label(str(code), lang),
        "N": number,
        # Count cells are class "n" (and "s" when suppressed), so they can be styled and checked.
        "C": lambda value: "n s" if value == SUPPRESSED else "n",
        "P": _pct,
        "R": lambda v: "—" if v is None else f"{v:.2f}",
        "D": lambda v: "—" if v is None else f"{v:.1f}",
        "CI": interval,
    }


def _language(language: str) -> str:
    return language if language in LANGUAGES else "en"


def render_html(report: Report, language: str = "en") -> str:
    """The whole report as one self-contained HTML page in ``language`` ("en" or "es"): inline styles
    with a print layout (the way to a PDF is the browser's "Save as PDF"), nothing loaded from anywhere."""
    lang = _language(language)
    return _environment().get_template("report_page.html").render(**_context(report, lang))


def render_body(report: Report, language: str = "en") -> Markup:
    """The report's content without a page around it (no <html>, no styles, no heading 1), for the web
    app's evaluation page: the same words, charts and tables as the downloadable report."""
    lang = _language(language)
    html = _environment().get_template("report_body.html").render(**_context(report, lang))
    return Markup(html)  # noqa: S704 - rendered by an autoescaping environment
