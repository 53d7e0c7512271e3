"""Server-side charts as inline SVG: pure functions from numbers to markup, no JavaScript, no PII.

Every chart is an ``<svg role="img">`` with a ``<title>`` and ``<desc>`` that state its figures in words,
so a screen reader gets the numbers and the page can also show them as a table. Colours meet 3:1
contrast against white and series differ by dash pattern and marker too, never by colour alone.
Labels are escaped here; the results are marked safe for the templates.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from markupsafe import Markup

from shared.regions import Region

__all__ = [
    "SERIES_COLOURS",
    "bar_chart",
    "histogram",
    "interval_chart",
    "line_chart",
    "project_regions",
    "region_map",
    "step_chart",
]

# Dark enough for 3:1 against white (WCAG 1.4.11 non-text contrast).
SERIES_COLOURS = ("#1f5fa8", "#b34700", "#2d6a2e", "#6b3fa0", "#8a1c3b")
_DASHES = ("", "6 3", "2 3", "8 3 2 3", "1 2")
_INK = "#1a1a1a"
_GRID = "#767676"
_FONT = 'font-family="system-ui, sans-serif"'


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _svg(uid: str, width: int, height: int, title: str, desc: str, body: list[str]) -> Markup:
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}"'
        f' role="img" aria-labelledby="{_e(uid)}-t {_e(uid)}-d" preserveAspectRatio="xMinYMin meet" {_FONT}>'
        f'<title id="{_e(uid)}-t">{_e(title)}</title><desc id="{_e(uid)}-d">{_e(desc)}</desc>'
    )
    return Markup(head + "".join(body) + "</svg>")  # noqa: S704 - every interpolated value is escaped above


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _ticks(top: float, count: int = 4) -> tuple[float, float]:
    """An axis maximum and step: about ``count`` steps of 1, 2 or 5 times a power of ten, whole numbers
    for counts (``top`` >= 1)."""
    raw = max(top, 1.0) / count
    exp = 10 ** math.floor(math.log10(raw))
    step = next(m * exp for m in (1, 2, 5, 10) if raw <= m * exp)
    step = max(step, 1.0)
    return step * math.ceil(max(top, 1.0) / step), step


def _clip(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[: max(1, chars - 1)] + "…"


def bar_chart(
    uid: str,
    title: str,
    items: Sequence[tuple[str, float | None]],
    *,
    unit: str = "",
    maximum: float | None = None,
    width: int = 440,
    missing: str = "—",
) -> Markup:
    """Horizontal bars, one per labelled value (labels left, values at the bar's end). A value of
    None (e.g. a suppressed count) gets no bar, only the ``missing`` word.

    Long labels are shortened on the chart; the description (and the page's table) has them whole.
    """
    row = 26
    label_w = int(width * 0.42)
    chars = label_w // 8
    value_w = 56
    height = max(row, row * len(items)) + 8
    top = max([v for _, v in items if v is not None] + [0.0]) if maximum is None else maximum
    scale = _ticks(top)[0] if maximum is None else max(maximum, 1e-9)
    plot_w = width - label_w - value_w
    body: list[str] = []
    for i, (label, value) in enumerate(items):
        y = 4 + i * row
        if value is None:
            body.append(
                f'<text x="{label_w - 6}" y="{y + 17}" text-anchor="end" font-size="13" fill="{_INK}">{_e(_clip(label, chars))}</text>'
                f'<text x="{label_w + 4}" y="{y + 17}" font-size="13" font-style="italic" fill="{_GRID}">{_e(missing)}</text>'
            )
            continue
        w = max(0.0, min(1.0, value / scale)) * plot_w
        body.append(
            f'<text x="{label_w - 6}" y="{y + 17}" text-anchor="end" font-size="13" fill="{_INK}">{_e(_clip(label, chars))}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 8}" fill="{SERIES_COLOURS[0]}"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 17}" font-size="13" fill="{_INK}">{_e(_fmt(value))}{_e(unit)}</text>'
        )
    if not items:
        body.append(f'<text x="8" y="18" font-size="13" fill="{_INK}">—</text>')
    desc = (
        "; ".join(f"{label}: {missing if value is None else _fmt(value) + unit}" for label, value in items)
        or "no data"
    )
    return _svg(uid, width, height, title, desc, body)


def interval_chart(
    uid: str,
    title: str,
    rows: Sequence[tuple[str, float | None, float | None, float | None]],
    *,
    log: bool = False,
    reference: float | None = None,
    percent: bool = True,
    width: int = 640,
    missing: str = "—",
) -> Markup:
    """Point estimates with their intervals, one row each (a forest plot): shares on a 0-100% axis, or
    ratios on a log axis with a reference line at 1. A row without an estimate gets the ``missing``
    word. The description states every estimate and interval."""
    row_h, label_w, top_pad, axis_h = 26, int(width * 0.36), 6, 26
    plot_w = width - label_w - 20
    height = top_pad + row_h * max(1, len(rows)) + axis_h
    shown = [(lo, hi) for _, est, lo, hi in rows if est is not None and lo is not None and hi is not None]
    if log:
        lows = [lo for lo, _ in shown if lo > 0] + ([reference] if reference else []) + [0.5]
        highs = [hi for _, hi in shown] + ([reference] if reference else []) + [2.0]
        lo_axis = 2.0 ** math.floor(math.log2(max(min(lows), 1e-3)))
        hi_axis = 2.0 ** math.ceil(math.log2(min(max(highs), 1e3)))

        def x(v: float) -> float:
            v = min(max(v, lo_axis), hi_axis)
            return label_w + plot_w * (math.log(v) - math.log(lo_axis)) / (
                math.log(hi_axis) - math.log(lo_axis)
            )

        ticks = []
        t = lo_axis
        while t <= hi_axis * 1.0001:
            ticks.append(t)
            t *= 2
    else:
        # 0 to a round share (50%, 60%, 80% or 100%) in steps of 10% or 20%.
        top_share = max([0.5] + [hi for _, hi in shown])
        hi_axis = next(v for v in (0.5, 0.6, 0.8, 1.0) if top_share <= v + 1e-9)
        step_share = 0.1 if hi_axis <= 0.6 else 0.2

        def x(v: float) -> float:
            return label_w + plot_w * min(max(v, 0.0), hi_axis) / hi_axis

        ticks = [step_share * k for k in range(round(hi_axis / step_share) + 1)]

    def fmt(v: float) -> str:
        return f"{v * 100:.0f}%" if percent and not log else (f"{v:.2f}" if v < 10 else f"{v:.0f}")

    body: list[str] = []
    chars = label_w // 7
    plot_bottom = top_pad + row_h * max(1, len(rows))
    for t in ticks:
        body.append(
            f'<line x1="{x(t):.1f}" y1="{top_pad}" x2="{x(t):.1f}" y2="{plot_bottom}" stroke="#d0d0d0" stroke-width="0.5"/>'
            f'<text x="{x(t):.1f}" y="{plot_bottom + 16}" text-anchor="middle" font-size="11" fill="{_INK}">{_e(fmt(t))}</text>'
        )
    if reference is not None:
        body.append(
            f'<line x1="{x(reference):.1f}" y1="{top_pad}" x2="{x(reference):.1f}" y2="{plot_bottom}"'
            f' stroke="{_INK}" stroke-dasharray="4 3"/>'
        )
    for i, (label, est, lo, hi) in enumerate(rows):
        y = top_pad + i * row_h + row_h / 2
        body.append(
            f'<text x="{label_w - 8}" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="{_INK}">{_e(_clip(label, chars))}</text>'
        )
        if est is None or lo is None or hi is None:
            body.append(
                f'<text x="{label_w + 4}" y="{y + 4:.1f}" font-size="12" font-style="italic" fill="{_GRID}">{_e(missing)}</text>'
            )
            continue
        colour = SERIES_COLOURS[0]
        if reference is not None and (hi < reference or lo > reference):
            colour = SERIES_COLOURS[0] if hi < reference else SERIES_COLOURS[1]
        body.append(
            f'<line x1="{x(lo):.1f}" y1="{y:.1f}" x2="{x(hi):.1f}" y2="{y:.1f}" stroke="{colour}" stroke-width="2.5"/>'
            f'<circle cx="{x(est):.1f}" cy="{y:.1f}" r="4.5" fill="{colour}"/>'
        )
    desc = (
        "; ".join(
            f"{label}: {missing}"
            if est is None or lo is None or hi is None
            else f"{label}: {fmt(est)} ({fmt(lo)} to {fmt(hi)})"
            for label, est, lo, hi in rows
        )
        or "no data"
    )
    return _svg(uid, width, height, title, desc, body)


def step_chart(
    uid: str,
    title: str,
    series: Sequence[tuple[str, Sequence[float], Sequence[float], Sequence[float], Sequence[float]]],
    *,
    x_label: str = "days",
    width: int = 640,
    height: int = 260,
) -> Markup:
    """Step curves from 100% down (survival), each ``(name, x, y, low, high)`` with a shaded band for
    its interval; distinct colour and dash per series, and a legend."""
    left, right, top, bottom = 44, 16, 30, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    x_max = max([max(xs) for _, xs, _, _, _ in series if xs] + [1.0])

    def px(v: float) -> float:
        return left + plot_w * v / x_max

    def py(v: float) -> float:
        return top + plot_h * (1 - v)

    body: list[str] = []
    for k in range(6):
        v = k / 5
        body.append(
            f'<line x1="{left}" y1="{py(v):.1f}" x2="{left + plot_w}" y2="{py(v):.1f}" stroke="#d0d0d0" stroke-width="0.5"/>'
            f'<text x="{left - 4}" y="{py(v) + 4:.1f}" text-anchor="end" font-size="11" fill="{_INK}">{v * 100:.0f}%</text>'
        )
    step = _ticks(x_max, 6)[1]
    t = 0.0
    while t <= x_max + 1e-9:
        body.append(
            f'<text x="{px(t):.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="11" fill="{_INK}">{_e(_fmt(t))}</text>'
        )
        t += step
    body.append(
        f'<text x="{left + plot_w}" y="{height - 4}" text-anchor="end" font-size="11" fill="{_INK}">{_e(x_label)}</text>'
    )
    for s_i, (name, xs, ys, lows, highs) in enumerate(series):
        colour = SERIES_COLOURS[s_i % len(SERIES_COLOURS)]
        dash = _DASHES[s_i % len(_DASHES)]
        if not xs:
            continue
        # The estimate holds from one day of the table to the next.
        upper, lower, line = [], [], []
        for j, (x0, y0, lo, hi) in enumerate(zip(xs, ys, lows, highs, strict=True)):
            x1 = xs[j + 1] if j + 1 < len(xs) else x0
            upper += [(px(x0), py(hi)), (px(x1), py(hi))]
            lower += [(px(x0), py(lo)), (px(x1), py(lo))]
            line += [(px(x0), py(y0)), (px(x1), py(y0))]
        band = " ".join(f"{a:.1f},{b:.1f}" for a, b in upper + lower[::-1])
        body.append(f'<polygon points="{band}" fill="{colour}" fill-opacity="0.15" stroke="none"/>')
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        points = " ".join(f"{a:.1f},{b:.1f}" for a, b in line)
        body.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2.5"{dash_attr}/>'
        )
        for a, b in line[::2]:
            body.append(_marker(s_i, a, b, colour))
        lx = left + s_i * 170
        body.append(
            f'<line x1="{lx}" y1="12" x2="{lx + 24}" y2="12" stroke="{colour}" stroke-width="2.5"{dash_attr}/>'
            f'<text x="{lx + 30}" y="16" font-size="12" fill="{_INK}">{_e(_clip(name, 20))}</text>'
        )
    desc = (
        "; ".join(
            f"{name}: "
            + ", ".join(f"{_fmt(x0)} {x_label} {y0 * 100:.0f}%" for x0, y0 in zip(xs, ys, strict=True))
            for name, xs, ys, _, _ in series
        )
        or "no data"
    )
    return _svg(uid, width, height, title, desc, body)


def line_chart(
    uid: str,
    title: str,
    x_labels: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    *,
    width: int = 800,
    height: int = 260,
    tick_every: int = 4,
) -> Markup:
    """Several series over the same x axis (e.g. hours), with a legend; distinct colour, dash and marker."""
    left, right, top, bottom = 40, 16, 32, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(1, len(x_labels))
    peak, step = _ticks(max((v for _, values in series for v in values), default=0.0))
    steps = round(peak / step)
    body: list[str] = []
    for k in range(steps + 1):
        value = step * k
        y = top + plot_h - plot_h * value / peak
        body.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" stroke="{_GRID}" stroke-width="0.5"/>'
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{_INK}">{_e(_fmt(value))}</text>'
        )

    def x_at(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    for i, label in enumerate(x_labels):
        if i % tick_every == 0 or i == n - 1:
            anchor = "end" if i == n - 1 else ("start" if i == 0 else "middle")
            body.append(
                f'<text x="{x_at(i):.1f}" y="{height - 16}" text-anchor="{anchor}" font-size="12" fill="{_INK}">{_e(label)}</text>'
            )
    for s, (name, values) in enumerate(series):
        colour = SERIES_COLOURS[s % len(SERIES_COLOURS)]
        dash = _DASHES[s % len(_DASHES)]
        points = " ".join(
            f"{x_at(i):.1f},{top + plot_h - plot_h * min(v, peak) / peak:.1f}" for i, v in enumerate(values)
        )
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        body.append(
            f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2.5"{dash_attr}/>'
        )
        for i, v in enumerate(values):
            if v:
                x, y = x_at(i), top + plot_h - plot_h * min(v, peak) / peak
                body.append(_marker(s, x, y, colour))
        lx = left + s * 190
        body.append(
            f'<line x1="{lx}" y1="12" x2="{lx + 24}" y2="12" stroke="{colour}" stroke-width="2.5"{dash_attr}/>'
            + _marker(s, lx + 12, 12, colour)
            + f'<text x="{lx + 30}" y="16" font-size="12" fill="{_INK}">{_e(name)} ({_e(_fmt(sum(values)))})</text>'
        )
    desc = "; ".join(
        f"{name}: {_fmt(sum(values))} in total, peak {_fmt(max(values, default=0))}"
        for name, values in series
    )
    return _svg(uid, width, height, title, desc, body)


def _marker(series: int, x: float, y: float, colour: str) -> str:
    kind = series % 3
    if kind == 0:
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}"/>'
    if kind == 1:
        return f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" fill="{colour}"/>'
    return f'<path d="M{x:.1f},{y - 4.5:.1f} L{x + 4.5:.1f},{y + 3.5:.1f} L{x - 4.5:.1f},{y + 3.5:.1f} Z" fill="{colour}"/>'


def histogram(
    uid: str,
    title: str,
    buckets: Sequence[tuple[str, int]],
    *,
    p50: str | None,
    p90: str | None,
    width: int = 440,
    height: int = 200,
) -> Markup:
    """Columns per bucket (label = the bucket's upper bound), with p50/p90 stated in the heading line."""
    left, right, top, bottom = 30, 6, 28, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    n = max(1, len(buckets))
    peak = _ticks(max((c for _, c in buckets), default=0))[0]
    col_w = plot_w / n
    body: list[str] = []
    summary = " · ".join(part for part in (f"p50 {p50}" if p50 else "", f"p90 {p90}" if p90 else "") if part)
    body.append(
        f'<text x="{left}" y="16" font-size="14" font-weight="600" fill="{_INK}">{_e(summary or "—")}</text>'
    )
    body.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="{_GRID}"/>'
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" font-size="11" fill="{_INK}">{_e(_fmt(peak))}</text>'
    )
    for i, (label, count) in enumerate(buckets):
        h = plot_h * count / peak
        x = left + i * col_w
        body.append(
            f'<rect x="{x + 2:.1f}" y="{top + plot_h - h:.1f}" width="{max(1.0, col_w - 4):.1f}" height="{h:.1f}" fill="{SERIES_COLOURS[0]}"/>'
            f'<text x="{x + col_w / 2:.1f}" y="{height - 18}" text-anchor="middle" font-size="11" fill="{_INK}">{_e(label)}</text>'
        )
        if count:
            body.append(
                f'<text x="{x + col_w / 2:.1f}" y="{top + plot_h - h - 3:.1f}" text-anchor="middle" font-size="10" fill="{_INK}">{count}</text>'
            )
    desc = (summary + ". " if summary else "") + "; ".join(
        f"up to {label}: {count}" for label, count in buckets
    )
    return _svg(uid, width, height, title, desc, body)


def project_regions(
    regions: Sequence[Region], width: int, height: int, pad: float = 10.0
) -> dict[str, tuple[str, tuple[float, float]]]:
    """SVG path data and a label point per region code, fitted into ``width`` by ``height``.

    An equirectangular projection scaled by cos(latitude) is accurate enough for a county.
    """
    pts = [p for r in regions for ring in r.polygons for p in ring]
    if not pts:
        return {}
    min_lon, max_lon = min(p[0] for p in pts), max(p[0] for p in pts)
    min_lat, max_lat = min(p[1] for p in pts), max(p[1] for p in pts)
    kx = math.cos(math.radians((min_lat + max_lat) / 2))
    span_x = max((max_lon - min_lon) * kx, 1e-9)
    span_y = max(max_lat - min_lat, 1e-9)
    scale = min((width - 2 * pad) / span_x, (height - 2 * pad) / span_y)
    off_x = (width - span_x * scale) / 2
    off_y = (height - span_y * scale) / 2

    def xy(lon: float, lat: float) -> tuple[float, float]:
        return off_x + (lon - min_lon) * kx * scale, off_y + (max_lat - lat) * scale

    out: dict[str, tuple[str, tuple[float, float]]] = {}
    for region in regions:
        parts: list[str] = []
        area_x = area_y = area = 0.0
        for ring in region.polygons:
            coords = [xy(lon, lat) for lon, lat in ring]
            parts.append("M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in coords) + " Z")
            # Area-weighted centroid of the ring (shoelace), for the label.
            for (x1, y1), (x2, y2) in zip(coords, coords[1:] + coords[:1], strict=True):
                cross = x1 * y2 - x2 * y1
                area += cross
                area_x += (x1 + x2) * cross
                area_y += (y1 + y2) * cross
        if area:
            centre = (area_x / (3 * area), area_y / (3 * area))
        else:
            flat = [xy(lon, lat) for ring in region.polygons for lon, lat in ring]
            centre = (sum(x for x, _ in flat) / len(flat), sum(y for _, y in flat) / len(flat))
        out[region.code] = (" ".join(parts), centre)
    return out


def region_map(
    uid: str,
    title: str,
    regions: Sequence[Region],
    counts: dict[str, int],
    names: dict[str, str],
    count_label: str,
    *,
    hidden_label: str = "",
    width: int = 640,
    height: int = 460,
) -> Markup:
    """The regions' outlines shaded by their referral counts; each region's name and count stand to the
    right of the map with a leader line to the region. Counts only: no youth-level points, ever."""
    map_w = int(width * 0.58)
    shapes = project_regions(regions, map_w, height)
    peak = max([counts.get(r.code, 0) for r in regions] + [1])
    body: list[str] = []
    label_x = map_w + 20
    placed: list[float] = []
    for i, region in enumerate(regions):
        if region.code not in shapes:
            continue
        path, (cx, cy) = shapes[region.code]
        n = counts.get(region.code, 0)
        shown = region.code in counts or not hidden_label
        # Lighter to darker blue with the count; the outline carries the 3:1 contrast.
        shade = 0.15 + 0.45 * n / peak
        fill = f"rgb({int(255 - 200 * shade)},{int(255 - 140 * shade)},{int(255 - 60 * shade)})"
        outline = SERIES_COLOURS[i % len(SERIES_COLOURS)]
        label = names.get(region.code, region.code)
        body.append(
            f'<path d="{path}" fill="{fill}" stroke="{outline}" stroke-width="2" fill-rule="evenodd"/>'
        )
        ly = max(24.0, min(height - 30.0, cy))
        while any(abs(ly - p) < 48 for p in placed):
            ly += 48
        placed.append(ly)
        body.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{_INK}"/>'
            f'<polyline points="{cx:.1f},{cy:.1f} {label_x - 6},{ly - 5:.1f}" fill="none" stroke="{_INK}" stroke-width="1"/>'
            f'<text x="{label_x}" y="{ly:.1f}" font-size="16" font-weight="700" fill="{_INK}">{_e(label)}</text>'
            f'<text x="{label_x}" y="{ly + 20:.1f}" font-size="15" fill="{_INK}">'
            f"{_e(count_label.format(n=n) if shown else hidden_label)}</text>"
        )
    desc = "; ".join(
        f"{names.get(r.code, r.code)}: {counts.get(r.code, 0) if r.code in counts or not hidden_label else hidden_label}"
        for r in regions
    )
    return _svg(uid, width, height, title, desc, body)
