"""The evaluation report as one self-contained HTML page with inline SVG charts (works offline); pure."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from services.intake.evaluation.report import REGION_LABELS, RateRow, Report
from services.intake.evaluation.suppression import SUPPRESSED, Grid, Shown

__all__ = ["render_html"]

_LABELS = {
    "housing": "Housing (housing help, placement)",
    "therapy": "Therapy (mental health, substance use)",
    "legal": "Legal (advocacy, vacatur, immigration relief)",
    "education_work": "Education and work (school enrolment, job training)",
    "mentoring": "Mentoring and peer support",
    "intake": "Intake",
    "m3": "3 months",
    "m6": "6 months",
    "m12": "12 months",
    "m24": "24 months",
    "re_arrest": "Not re-arrested",
    "return_to_exploitation": "Not returned to exploitation",
    "housing_stability": "Stably housed",
    "in_school_or_work": "In school or work",
    "safety": "Feels safe",
    "not_recorded": "Not recorded",
    **REGION_LABELS,
}
_CHANGE = {
    "lower": "lower than at intake",
    "higher": "higher than at intake",
    "similar": "no clear change",
    "": "",
}
_VERDICT = {"lower": "lower", "higher": "higher", "similar": "within chance", "": ""}
_BLUE, _GREY, _ORANGE, _INK = "#2f6db5", "#9aa5b1", "#d9822b", "#1f2933"


def _label(code: str) -> str:
    return _LABELS.get(code, code.replace("_", " ").capitalize())


def _n(value: Shown) -> str:
    return "suppressed" if value == SUPPRESSED else f"{value:,}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.0f}%"


def _ci(row: RateRow) -> str:
    if row.rate is None or row.ci_low is None or row.ci_high is None:
        return "not shown (small numbers)"
    return f"{_pct(row.rate)} (95% CI {_pct(row.ci_low)} to {_pct(row.ci_high)})"


# --------------------------------------------------------------------------- charts (inline SVG)


def _bars(items: Sequence[tuple[str, Shown]], *, width: int = 760, colour: str = _BLUE) -> str:
    """Horizontal bars; a suppressed value gets no bar, only the word."""
    label_w, row_h, pad = 260, 26, 8
    numeric = [v for _, v in items if isinstance(v, int)]
    top = max(numeric, default=0) or 1
    height = pad * 2 + row_h * len(items)
    bar_w = width - label_w - 90
    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for i, (label, value) in enumerate(items):
        y = pad + i * row_h
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end" class="lbl">{escape(label)}</text>'
        )
        if isinstance(value, int):
            w = max(1.0, bar_w * value / top) if value else 0
            parts.append(
                f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" fill="{colour}"/>'
            )
            parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 17}" class="val">{value:,}</text>')
        else:
            parts.append(f'<text x="{label_w + 4}" y="{y + 17}" class="sup">suppressed (small number)</text>')
    parts.append("</svg>")
    return "".join(parts)


def _forest(
    rows: Sequence[tuple[str, RateRow]], baseline: RateRow, *, width: int = 760, title_scale: str = ""
) -> str:
    """Rates with their Wilson intervals against the baseline rate (dashed line, shaded interval)."""
    label_w, row_h, pad, axis_h = 300, 28, 10, 30
    plot_w = width - label_w - 110
    height = pad * 2 + row_h * len(rows) + axis_h
    shown = [r for _, r in rows if r.rate is not None and r.ci_high is not None]
    top = max([0.5, *(r.ci_high or 0 for r in shown), baseline.ci_high or 0])
    top = min(1.0, (int(top * 10) + 1) / 10)

    def x(v: float) -> float:
        return label_w + plot_w * v / top

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    body_h = row_h * len(rows)
    if baseline.rate is not None and baseline.ci_low is not None and baseline.ci_high is not None:
        parts.append(
            f'<rect x="{x(baseline.ci_low):.1f}" y="{pad}" width="{x(baseline.ci_high) - x(baseline.ci_low):.1f}"'
            f' height="{body_h}" fill="{_GREY}" opacity="0.18"/>'
        )
        parts.append(
            f'<line x1="{x(baseline.rate):.1f}" x2="{x(baseline.rate):.1f}" y1="{pad}" y2="{pad + body_h}"'
            f' stroke="{_INK}" stroke-dasharray="4 3"/>'
        )
    for i, (label, r) in enumerate(rows):
        y = pad + i * row_h + row_h / 2
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 5}" text-anchor="end" class="lbl">{escape(label)}</text>'
        )
        if r.rate is None or r.ci_low is None or r.ci_high is None:
            parts.append(f'<text x="{label_w + 4}" y="{y + 5}" class="sup">not shown: small numbers</text>')
            continue
        colour = {"lower": _BLUE, "higher": _ORANGE}.get(r.versus_baseline or "", _INK)
        parts.append(
            f'<line x1="{x(r.ci_low):.1f}" x2="{x(r.ci_high):.1f}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="2"/>'
        )
        parts.append(f'<circle cx="{x(r.rate):.1f}" cy="{y}" r="5" fill="{colour}"/>')
        parts.append(f'<text x="{width - 104}" y="{y + 5}" class="val">{_pct(r.rate)} of {_n(r.n)}</text>')
    y0 = pad + body_h
    parts.append(f'<line x1="{label_w}" x2="{label_w + plot_w}" y1="{y0}" y2="{y0}" stroke="{_GREY}"/>')
    steps = 5
    for k in range(steps + 1):
        v = top * k / steps
        parts.append(
            f'<text x="{x(v):.1f}" y="{y0 + 18}" text-anchor="middle" class="axis">{v * 100:.0f}%</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _series(rows: Sequence[RateRow], *, width: int = 360, height: int = 190) -> str:
    """Share with the good outcome at each follow-up, with interval whiskers; gaps where not shown."""
    left, right, top_pad, bottom = 40, 12, 12, 34
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    n = len(rows)

    def x(i: int) -> float:
        return left + plot_w * (i + 0.5) / n

    def y(v: float) -> float:
        return top_pad + plot_h * (1 - v)

    parts = [f'<svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for v in (0, 0.5, 1):
        parts.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e4e7eb"/>'
        )
        parts.append(
            f'<text x="{left - 4}" y="{y(v) + 4:.1f}" text-anchor="end" class="axis">{v * 100:.0f}%</text>'
        )
    previous: tuple[float, float] | None = None
    for i, r in enumerate(rows):
        parts.append(
            f'<text x="{x(i):.1f}" y="{height - 14}" text-anchor="middle" class="axis">'
            f"{escape(_label(r.label).replace(' months', ' mo'))}</text>"
        )
        if r.rate is None or r.ci_low is None or r.ci_high is None:
            parts.append(f'<text x="{x(i):.1f}" y="{y(0.5):.1f}" text-anchor="middle" class="sup">n/s</text>')
            previous = None
            continue
        point = (x(i), y(r.rate))
        if previous is not None:
            parts.append(
                f'<line x1="{previous[0]:.1f}" y1="{previous[1]:.1f}" x2="{point[0]:.1f}" y2="{point[1]:.1f}"'
                f' stroke="{_BLUE}" stroke-width="2"/>'
            )
        parts.append(
            f'<line x1="{point[0]:.1f}" x2="{point[0]:.1f}" y1="{y(r.ci_low):.1f}" y2="{y(r.ci_high):.1f}"'
            f' stroke="{_BLUE}" opacity="0.6"/>'
        )
        parts.append(f'<circle cx="{point[0]:.1f}" cy="{point[1]:.1f}" r="4" fill="{_BLUE}"/>')
        previous = point
    parts.append("</svg>")
    return "".join(parts)


# --------------------------------------------------------------------------- tables and text


def _table(grid: Grid, row_label: str = "") -> str:
    head = "".join(f"<th>{escape(_label(c))}</th>" for c in grid.columns)
    out = [f"<table><thead><tr><th>{escape(row_label)}</th>{head}<th>Total</th></tr></thead><tbody>"]
    for i, label in enumerate(grid.rows):
        cells = "".join(f'<td class="{_cls(v)}">{_n(v)}</td>' for v in grid.cells[i])
        total = grid.row_totals[i]
        out.append(
            f'<tr><th>{escape(_label(label))}</th>{cells}<td class="tot {_cls(total)}">{_n(total)}</td></tr>'
        )
    totals = "".join(f'<td class="tot {_cls(v)}">{_n(v)}</td>' for v in grid.column_totals)
    out.append(
        f'<tr class="tot"><th>Total</th>{totals}<td class="tot {_cls(grid.total)}">{_n(grid.total)}</td></tr>'
    )
    out.append("</tbody></table>")
    return "".join(out)


def _cls(value: Shown) -> str:
    return "s" if value == SUPPRESSED else ""


def _rate_table(rows: Sequence[tuple[str, RateRow]], baseline_name: str, event: str) -> str:
    out = [
        f"<table><thead><tr><th></th><th>Youth</th><th>{escape(event)}</th><th>Share (95% CI)</th>"
        f"<th>vs {escape(baseline_name)}</th></tr></thead><tbody>"
    ]
    for label, r in rows:
        diff = (
            "—"
            if r.difference_pp is None
            else f"{r.difference_pp:+.1f} pts ({_VERDICT[r.versus_baseline or '']})"
        )
        out.append(
            f"<tr><th>{escape(label)}</th><td class='{_cls(r.n)}'>{_n(r.n)}</td>"
            f"<td class='{_cls(r.events)}'>{_n(r.events)}</td><td>{escape(_ci(r))}</td><td>{escape(diff)}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _findings(report: Report) -> list[str]:
    """Plain sentences for a programme manager, only from published (unsuppressed) numbers."""
    out = []
    base = report.recidivism_baseline
    if base.rate is not None:
        out.append(
            f"Across the {_n(base.n)} youth seen at a follow-up after intake, {_pct(base.rate)} were re-arrested"
            f" or returned to exploitation at some point (95% CI {_pct(base.ci_low)} to {_pct(base.ci_high)})."
        )
    for fam in report.recidivism_by_family:
        got, not_got = fam.received, fam.not_received
        if got.rate is None or not_got.rate is None:
            continue
        if got.versus_baseline == "lower":
            verdict = "noticeably less often than the cohort as a whole"
        elif got.versus_baseline == "higher":
            verdict = "more often than the cohort as a whole"
        else:
            verdict = "about as often as the cohort as a whole (the difference is within chance)"
        out.append(
            f"Youth who received {_label(fam.family).split(' (')[0].lower()} services re-offended or were"
            f" re-exploited {verdict}: {_pct(got.rate)} of {_n(got.n)}, against {_pct(not_got.rate)} of"
            f" {_n(not_got.n)} who did not."
        )
    everyone = next((c for c in report.time_to_first_contact if c.label == "All regions"), None)
    if everyone is not None and everyone.median_days is not None:
        out.append(
            f"Half of the youth were first contacted within {everyone.median_days:.1f} days of the referral"
            f" (a quarter within {everyone.p25_days:.1f} days; three quarters within {everyone.p75_days:.1f})."
        )
    for series in report.outcomes_by_followup:
        first, last = series.rows[0], next((r for r in reversed(series.rows) if r.rate is not None), None)
        wanted = series.measure in ("housing_stability", "in_school_or_work")
        if wanted and first.rate is not None and last is not None and last is not first:
            out.append(
                f"{_label(series.measure)}: {_pct(first.rate)} at intake, {_pct(last.rate)} at"
                f" {_label(last.label).lower()} ({_CHANGE[last.versus_baseline or '']})."
            )
    return out


_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;margin:0;background:#f5f7fa}
main{max-width:980px;margin:0 auto;padding:28px 36px;background:#fff}
h1{font-size:26px;margin:0 0 4px}h2{font-size:20px;margin:34px 0 6px;border-bottom:2px solid #e4e7eb;padding-bottom:4px}
h3{font-size:16px;margin:18px 0 4px}.muted{color:#616e7c}.banner{background:#fff4e5;border-left:5px solid #d9822b;
padding:10px 14px;margin:14px 0}.cards{display:flex;gap:14px;flex-wrap:wrap;margin:18px 0}.card{flex:1 1 190px;
border:1px solid #e4e7eb;border-radius:6px;padding:10px 14px}.card b{display:block;font-size:24px}
table{border-collapse:collapse;margin:8px 0 4px;font-size:13px}th,td{border:1px solid #e4e7eb;padding:3px 8px;
text-align:right}th{text-align:left;background:#f5f7fa;font-weight:600}td.s{color:#9aa5b1;font-style:italic}
.tot{font-weight:600}svg text{font:12px system-ui,sans-serif;fill:#1f2933}svg .sup{fill:#9aa5b1;font-style:italic}
svg .axis{fill:#616e7c;font-size:11px}svg .val{font-weight:600}.grid{display:flex;flex-wrap:wrap;gap:8px 24px}
.grid figure{margin:0}figcaption{font-weight:600;font-size:13px}ul.find li{margin:4px 0}
"""


def render_html(report: Report) -> str:
    """The whole report as HTML. Only published (suppressed) numbers are used: the page reveals nothing
    the JSON report does not."""
    base = report.recidivism_baseline
    contact_all = next((c for c in report.time_to_first_contact if c.label == "All regions"), None)
    median = (
        "—"
        if contact_all is None or contact_all.median_days is None
        else f"{contact_all.median_days:.1f} days"
    )
    period = f"{report.period_start} to {report.period_end}" if report.period_start else "no referrals yet"
    h: list[str] = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>refnet pilot evaluation</title><style>{_CSS}</style></head><body><main>",
        "<h1>Pilot evaluation: referrals, services and outcomes</h1>",
        f"<p class='muted'>Referrals received {escape(period)} · generated {report.generated_at:%Y-%m-%d %H:%M} UTC"
        " · de-identified, small numbers suppressed</p>",
    ]
    for note in report.provenance:
        h.append(f"<div class='banner'><b>About this data.</b> {escape(note)}</div>")
    h.append("<div class='cards'>")
    h.append(f"<div class='card'>Referrals<b>{_n(report.referrals)}</b></div>")
    h.append(f"<div class='card'>Followed up after intake<b>{_n(report.followed_up)}</b></div>")
    h.append(
        f"<div class='card'>Re-arrest or re-exploitation<b>{_pct(base.rate)}</b>{escape(_ci(base).split(' ', 1)[-1]) if base.rate is not None else 'not shown'}</div>"
    )
    h.append(f"<div class='card'>Median time to first contact<b>{escape(median)}</b></div></div>")

    findings = _findings(report)
    if findings:
        h.append("<h2>What the numbers say</h2><ul class='find'>")
        h.extend(f"<li>{escape(f)}</li>" for f in findings)
        h.append("</ul>")

    src = report.referrals_by_source
    h.append("<h2>Where referrals come from</h2>")
    h.append("<p class='muted'>Referrals by the setting the referring partner reported, all regions.</p>")
    h.append(_bars([(_label(r), src.row_totals[i]) for i, r in enumerate(src.rows)]))
    h.append(_table(src, "Referral setting"))

    h.append("<h2>Where referrals stand</h2>")
    h.append(_table(report.status_by_region, "Status"))
    h.append("<h3>Why cases were closed</h3>")
    h.append(_table(report.close_reasons, "Close reason"))

    h.append("<h2>How fast youth were reached</h2>")
    h.append(
        "<p class='muted'>Days from referral to the case manager's first contact (engaged referrals).</p>"
    )
    hist = report.time_to_first_contact_histogram
    h.append(_bars([(r, hist.row_totals[i]) for i, r in enumerate(hist.rows)], colour="#3d9970"))
    h.append(
        "<table><thead><tr><th></th><th>Youth reached</th><th>Median days</th><th>Quarter within</th>"
        "<th>Three quarters within</th></tr></thead><tbody>"
    )
    for c in report.time_to_first_contact:
        cells = [_n(c.n)] + [
            "—" if v is None else f"{v:.1f}" for v in (c.median_days, c.p25_days, c.p75_days)
        ]
        h.append(
            f"<tr><th>{escape(c.label)}</th>" + "".join(f"<td>{escape(v)}</td>" for v in cells) + "</tr>"
        )
    h.append("</tbody></table>")

    h.append("<h2>Re-arrest and return to exploitation</h2>")
    h.append(
        f"<p class='muted'>{escape(report.recidivism_definition)} The dashed line is the whole cohort"
        " (shaded: its 95% interval); blue means lower than the cohort beyond chance, orange higher.</p>"
    )
    fam_rows: list[tuple[str, RateRow]] = []
    for fam in report.recidivism_by_family:
        fam_rows += [
            (f"{_label(fam.family).split(' (')[0]}: received", fam.received),
            (f"{_label(fam.family).split(' (')[0]}: not received", fam.not_received),
        ]
    h.append("<h3>By kind of help received</h3>")
    h.append(_forest(fam_rows, base))
    h.append(_rate_table(fam_rows, "cohort", "Re-arrested or re-exploited"))
    dose = [(r.label.capitalize(), r) for r in report.recidivism_by_count]
    h.append("<h3>By how many of the five kinds of help were received</h3>")
    h.append(_forest(dose, base))
    h.append(_rate_table(dose, "cohort", "Re-arrested or re-exploited"))
    combos = [(r.label, r) for r in report.recidivism_by_combination]
    h.append("<h3>By combination of help received</h3>")
    h.append(
        "<p class='muted'>Each youth counts once, under the exact set of the five kinds of help they"
        f" received. Combinations with fewer than {report.combination_min_group} youth followed up (too few"
        " for any rate to be shown) are counted together as 'other combinations'.</p>"
    )
    if [r for r, _ in combos] == ["other combinations"]:
        h.append(
            "<p><b>No single combination has reached that size yet</b>: the pilot cannot say which"
            " combination works best until more youth have been followed up.</p>"
        )
    h.append(_forest(combos, base))
    h.append(_rate_table(combos, "cohort", "Re-arrested or re-exploited"))

    h.append("<h2>Outcomes over time</h2>")
    h.append(
        "<p class='muted'>Share of youth observed at each follow-up with the good outcome, with 95%"
        " intervals; 'n/s' where numbers are too small to show. Compared with the same measure at intake.</p>"
    )
    h.append("<div class='grid'>")
    for series in report.outcomes_by_followup:
        h.append(
            f"<figure><figcaption>{escape(_label(series.measure))}</figcaption>{_series(series.rows)}</figure>"
        )
    h.append("</div>")
    for series in report.outcomes_by_followup:
        h.append(f"<h3>{escape(_label(series.measure))}</h3>")
        h.append(
            _rate_table([(_label(r.label), r) for r in series.rows], "intake", series.favourable.capitalize())
        )

    h.append("<h2>How to read this report</h2><ul>")
    h.extend(f"<li>{escape(note)}</li>" for note in report.notes)
    h.append("</ul></main></body></html>")
    return "\n".join(h)
