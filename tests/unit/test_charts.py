"""Server-side SVG charts: well-formed, accessible (title/desc), escaped, and counts-only maps."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from services.intake.web import charts
from shared.regions import default_catalogue

SVG = "{http://www.w3.org/2000/svg}"


def _parse(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))  # noqa: S314 - our own generated markup
    assert root.tag == SVG + "svg"
    assert root.get("role") == "img"
    labelled = root.get("aria-labelledby", "").split()
    ids = {el.get("id") for el in root.iter() if el.get("id")}
    assert labelled and set(labelled) <= ids
    assert root.find(SVG + "title") is not None and root.find(SVG + "desc") is not None
    return root


def test_bar_chart_escapes_labels_and_states_values() -> None:
    svg = charts.bar_chart("b", "By <partner>", [("A & B <script>", 3), ("C", 0)])
    root = _parse(svg)
    assert "<script>" not in str(svg)
    desc = root.find(SVG + "desc")
    assert desc is not None and desc.text == "A & B <script>: 3; C: 0"
    widths = [float(r.get("width", "0")) for r in root.iter(SVG + "rect")]
    assert widths[0] > 0 and widths[1] == 0


def test_bar_chart_percentages_are_capped() -> None:
    root = _parse(charts.bar_chart("u", "Utilisation", [("x", 150)], unit="%", maximum=100))
    (rect,) = list(root.iter(SVG + "rect"))
    assert float(rect.get("width", "0")) <= 440


def test_line_chart_has_series_and_integer_ticks() -> None:
    svg = charts.line_chart(
        "l",
        "Last 24 h",
        [f"{h}:00" for h in range(24)],
        [("received", [0] * 23 + [3]), ("assigned", [0] * 24)],
    )
    root = _parse(svg)
    assert len(list(root.iter(SVG + "polyline"))) == 2
    ticks = [
        t.text
        for t in root.iter(SVG + "text")
        if t.get("text-anchor") == "end" and t.text and t.text.isdigit()
    ]
    assert "3" in ticks or "4" in ticks
    assert all("." not in (t or "") for t in ticks)


def test_histogram_states_percentiles() -> None:
    root = _parse(charts.histogram("h", "Time", [("1s", 2), ("5s", 1), (">5s", 0)], p50="0.8 s", p90="3 s"))
    desc = root.find(SVG + "desc")
    assert desc is not None and "p50 0.8 s" in (desc.text or "") and "p90 3 s" in (desc.text or "")


def test_empty_charts_render() -> None:
    _parse(charts.bar_chart("e", "Nothing", []))
    _parse(charts.histogram("e2", "Nothing", [], p50=None, p90=None))
    _parse(charts.line_chart("e3", "Nothing", [], []))


def test_region_map_draws_the_catalogue_polygons_with_counts_only() -> None:
    cat = default_catalogue()
    names = {r.code: r.name for r in cat.regions}
    svg = charts.region_map("m", "Map", cat.regions, {"south_la": 7}, names, "Referrals: {n}")
    root = _parse(svg)
    paths = list(root.iter(SVG + "path"))
    assert len(paths) == len(cat.regions)
    for p in paths:
        assert p.get("d", "").startswith("M") and p.get("d", "").endswith("Z")
    texts = [t.text for t in root.iter(SVG + "text")]
    assert "Referrals: 7" in texts and "Referrals: 0" in texts
    assert "South Los Angeles" in texts
    # One marker per region (its label anchor), never a point per youth.
    assert len(list(root.iter(SVG + "circle"))) == len(cat.regions)


def test_region_map_hides_other_regions_for_a_supervisor() -> None:
    cat = default_catalogue()
    names = {r.code: r.name for r in cat.regions}
    svg = charts.region_map(
        "m", "Map", cat.regions, {"south_la": 2}, names, "Referrals: {n}", hidden_label="Not your region"
    )
    texts = [t.text for t in _parse(svg).iter(SVG + "text")]
    assert "Referrals: 2" in texts and "Not your region" in texts and "Referrals: 0" not in texts


def test_projection_fits_the_box() -> None:
    shapes = charts.project_regions(default_catalogue().regions, 300, 200)
    for path, (cx, cy) in shapes.values():
        coords = [tuple(map(float, p.strip("MLZ ").split(","))) for p in path.replace(" Z", "").split(" L")]
        assert all(-0.5 <= x <= 300.5 and -0.5 <= y <= 200.5 for x, y in coords)
        assert 0 <= cx <= 300 and 0 <= cy <= 200


def test_bar_chart_shows_a_hidden_value_as_a_word_without_a_bar() -> None:
    root = _parse(charts.bar_chart("s", "Sources", [("School", 40), ("Clinic", None)], missing="suppressed"))
    assert len(list(root.iter(SVG + "rect"))) == 1
    desc = root.find(SVG + "desc")
    assert desc is not None and desc.text == "School: 40; Clinic: suppressed"


def test_interval_chart_states_estimates_and_marks_the_reference() -> None:
    rows = [("Housing", 0.31, 0.22, 0.43), ("Mentoring", None, None, None), ("4+ arrests", 2.4, 1.9, 2.8)]
    root = _parse(charts.interval_chart("f", "Hazard ratios", rows, log=True, reference=1.0, percent=False))
    desc = root.find(SVG + "desc")
    assert desc is not None
    assert "Housing: 0.31 (0.22 to 0.43)" in (desc.text or "") and "Mentoring: —" in (desc.text or "")
    assert len(list(root.iter(SVG + "circle"))) == 2
    dashed = [line for line in root.iter(SVG + "line") if line.get("stroke-dasharray")]
    assert len(dashed) == 1, "one reference line at 1"
    shares = _parse(charts.interval_chart("r", "Shares", [("A", 0.4, 0.3, 0.5)]))
    assert "A: 40% (30% to 50%)" in (shares.find(SVG + "desc").text or "")  # type: ignore[union-attr]


def test_step_chart_draws_a_band_and_a_curve_per_series() -> None:
    series = [
        ("Received", [120.0, 210.0, 400.0], [1.0, 0.8, 0.7], [1.0, 0.7, 0.6], [1.0, 0.9, 0.8]),
        ("Not received", [120.0, 210.0], [1.0, 0.6], [1.0, 0.5], [1.0, 0.7]),
    ]
    root = _parse(charts.step_chart("k", "Survival", series))
    assert len(list(root.iter(SVG + "polygon"))) == 2
    assert len(list(root.iter(SVG + "polyline"))) == 2
    desc = root.find(SVG + "desc")
    assert desc is not None and "Received: 120 days 100%, 210 days 80%, 400 days 70%" in (desc.text or "")
    _parse(charts.step_chart("k2", "Nothing", []))
