"""Unit tests for the region catalogue and the pure region resolver."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.regions import Catalogue, CatalogueError, Region, default_catalogue

SOUTH = "south_la"
SFV = "san_fernando_valley"

REFERENCE_GEOJSON = Path(__file__).resolve().parents[3] / "shared" / "geo" / "la_county_spas.geojson"

# Census 2000 ZCTA internal points (public-domain CivicSpace/Census gazetteer): the point a ZIP's own
# listing must agree with, which catches a ZIP filed under the wrong region.
KNOWN_ZIP_CENTROIDS: list[tuple[str, float, float, str | None]] = [
    ("90001", 33.972914, -118.24878, SOUTH),  # Florence-Firestone
    ("90002", 33.948315, -118.24845, SOUTH),  # Watts
    ("90003", 33.962714, -118.27600, SOUTH),
    ("90011", 34.007063, -118.25868, SOUTH),
    ("90037", 34.002063, -118.28737, SOUTH),
    ("90044", 33.953814, -118.29158, SOUTH),
    ("90047", 33.958464, -118.30998, SOUTH),
    ("90059", 33.927471, -118.24778, SOUTH),  # Willowbrook
    ("90061", 33.923365, -118.27591, SOUTH),
    ("90220", 33.890566, -118.23666, SOUTH),  # Compton
    ("90262", 33.924642, -118.20186, SOUTH),  # Lynwood
    ("90723", 33.899915, -118.16231, SOUTH),  # Paramount
    ("91303", 34.198204, -118.60206, SFV),  # Canoga Park
    ("91324", 34.240353, -118.55038, SFV),  # Northridge
    ("91331", 34.254751, -118.42406, SFV),  # Pacoima
    ("91340", 34.284935, -118.43821, SFV),  # City of San Fernando
    ("91342", 34.307877, -118.42904, SFV),  # Sylmar
    ("91401", 34.176505, -118.43308, SFV),  # Van Nuys
    ("91405", 34.199704, -118.44724, SFV),  # Van Nuys
    ("91501", 34.186755, -118.30153, SFV),  # Burbank
    ("91201", 34.170130, -118.29158, SFV),  # Glendale
    ("91601", 34.168206, -118.37246, SFV),  # North Hollywood
    ("91354", 34.445313, -118.55252, SFV),  # Valencia (Santa Clarita)
    ("90401", 34.014910, -118.49220, None),  # Santa Monica, SPA 5
    ("90802", 33.769018, -118.19225, None),  # Long Beach, SPA 8
    ("91101", 34.146607, -118.13910, None),  # Pasadena, SPA 3
    ("90012", 34.061611, -118.23944, None),  # Downtown, SPA 4
    ("90255", 33.978404, -118.21773, None),  # Huntington Park, SPA 7
    ("90247", 33.891265, -118.29750, None),  # Gardena, SPA 8
    ("90302", 33.975263, -118.35558, None),  # Inglewood, SPA 8
]


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return default_catalogue()


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


# --- shipped data -------------------------------------------------------------------------------------


def test_shipped_catalogue_has_the_two_pilot_regions(catalogue: Catalogue) -> None:
    assert catalogue.codes == (SOUTH, SFV)
    assert catalogue.version
    by_code = {r.code: r for r in catalogue.regions}
    assert by_code[SOUTH].name == "South Los Angeles"
    assert by_code[SFV].name == "San Fernando Valley"
    assert all(r.polygons for r in catalogue.regions)


def test_default_catalogue_is_cached() -> None:
    assert default_catalogue() is default_catalogue()


def test_shipped_file_is_small_and_no_zip_is_in_two_regions() -> None:
    # Read the raw file rather than trusting the loader, which itself refuses duplicates.
    raw = resources.files("shared.regions").joinpath("catalogue.json").read_bytes()
    assert len(raw) < 300_000
    doc = json.loads(raw)
    seen: dict[str, str] = {}
    for region in doc["regions"]:
        assert len(region["zips"]) == len(set(region["zips"])), region["code"]
        for z in region["zips"]:
            assert z not in seen, f"{z} in {seen.get(z)} and {region['code']}"
            seen[z] = region["code"]
    assert {r["spa"] for r in doc["regions"]} == {2, 6}


# --- ZIPs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zip_code", "expected"),
    [
        ("90011", SOUTH),
        ("90011-1234", SOUTH),
        ("  90011\n", SOUTH),
        (" 90044-0001 ", SOUTH),
        ("90220", SOUTH),
        ("91405", SFV),
        ("91324-5678", SFV),
        ("\t91331 ", SFV),
        ("91354", SFV),
    ],
)
def test_resolve_zip_in_area(catalogue: Catalogue, zip_code: str, expected: str) -> None:
    assert catalogue.resolve_zip(zip_code) == expected


@pytest.mark.parametrize(
    "zip_code",
    [
        "90401",  # Santa Monica
        "90802",  # Long Beach
        "91101",  # Pasadena
        "10001",  # New York
        "00000",
        "",
        "   ",
        "9001",
        "900111",
        "90011-12",
        "90011 1234",
        "900111234",
        "9OO11",
        "\u0669\u0660\u0660\u0661\u0661",  # Arabic-Indic digits: not a USPS ZIP even if \d says so
    ],
)
def test_resolve_zip_unknown_or_malformed_is_none(catalogue: Catalogue, zip_code: str) -> None:
    assert catalogue.resolve_zip(zip_code) is None


@pytest.mark.parametrize(("zip_code", "lat", "lon", "expected"), KNOWN_ZIP_CENTROIDS)
def test_zip_lists_agree_with_known_centroids(
    catalogue: Catalogue, zip_code: str, lat: float, lon: float, expected: str | None
) -> None:
    assert catalogue.resolve_point(lat, lon) == expected
    assert catalogue.resolve_zip(zip_code) == expected


# --- points -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lon", "expected"),
    [
        (33.94, -118.24, SOUTH),  # Watts
        (33.8958, -118.2201, SOUTH),  # Compton city hall
        (34.0165, -118.2880, SOUTH),  # Exposition Park
        (34.0047, -118.3320, SOUTH),  # Leimert Park
        (34.19, -118.45, SFV),  # Van Nuys
        (34.2283, -118.5368, SFV),  # Northridge
        (34.2410, -118.5290, SFV),  # CSUN
        (34.1808, -118.3090, SFV),  # Burbank
        (34.3917, -118.5426, SFV),  # Santa Clarita
        (34.0195, -118.4912, None),  # downtown Santa Monica, SPA 5
        (33.7701, -118.1937, None),  # downtown Long Beach, SPA 8
        (34.1478, -118.1445, None),  # Pasadena, SPA 3
        (34.0522, -118.2437, None),  # downtown Los Angeles, SPA 4
        (33.9617, -118.3531, None),  # Inglewood, SPA 8
        (34.6868, -118.1542, None),  # Lancaster, SPA 1
        (40.7128, -74.0060, None),  # New York
        (0.0, 0.0, None),
    ],
)
def test_resolve_point(catalogue: Catalogue, lat: float, lon: float, expected: str | None) -> None:
    assert catalogue.resolve_point(lat, lon) == expected


@pytest.mark.parametrize(
    ("lat", "lon"),
    [
        (math.nan, -118.24),
        (33.94, math.nan),
        (math.inf, -118.24),
        (33.94, -math.inf),
        (91.0, -118.24),
        (-90.5, 0.0),
        (33.94, 181.0),
        (33.94, -180.01),
        (-118.24, 33.94),  # lat/lon swapped: out of range, never silently in area
    ],
)
def test_resolve_point_rejects_non_finite_and_out_of_range(
    catalogue: Catalogue, lat: float, lon: float
) -> None:
    assert catalogue.resolve_point(lat, lon) is None


def test_resolve_point_rejects_non_numbers(catalogue: Catalogue) -> None:
    bad: Any = "33.94"
    assert catalogue.resolve_point(bad, -118.24) is None
    assert catalogue.resolve_point(True, -118.24) is None  # bool is an int, never a coordinate
    assert catalogue.resolve_point(34, -118) is None  # ints are fine, just outside both regions


@settings(database=None, deadline=None, max_examples=300)
@given(
    lat=st.floats(allow_nan=True, allow_infinity=True),
    lon=st.floats(allow_nan=True, allow_infinity=True),
)
def test_resolve_point_never_raises(lat: float, lon: float) -> None:
    catalogue = default_catalogue()
    result = catalogue.resolve_point(lat, lon)
    assert result is None or result in catalogue.codes
    assert catalogue.resolve(None, lat, lon) == result


@settings(database=None, deadline=None, max_examples=200)
@given(text=st.text())
def test_resolve_zip_never_raises(text: str) -> None:
    catalogue = default_catalogue()
    result = catalogue.resolve_zip(text)
    assert result is None or result in catalogue.codes


# --- resolve ------------------------------------------------------------------------------------------


def test_resolve_dispatches_on_the_shape_of_the_location(catalogue: Catalogue) -> None:
    assert catalogue.resolve("90011", None, None) == SOUTH
    assert catalogue.resolve("91405-0000", None, None) == SFV
    assert catalogue.resolve(None, 33.94, -118.24) == SOUTH
    assert catalogue.resolve(None, 34.19, -118.45) == SFV
    assert catalogue.resolve("90401", None, None) is None
    assert catalogue.resolve(None, 34.0195, -118.4912) is None


@pytest.mark.parametrize(
    ("zip_code", "lat", "lon"),
    [
        (None, None, None),
        (None, 33.94, None),
        (None, None, -118.24),
        ("90011", 33.94, None),
        ("90011", 33.94, -118.24),  # both shapes at once is not a location the brief allows
        ("90011", None, -118.24),
    ],
)
def test_resolve_other_shapes_are_out_of_area(
    catalogue: Catalogue, zip_code: str | None, lat: float | None, lon: float | None
) -> None:
    assert catalogue.resolve(zip_code, lat, lon) is None


# --- custom catalogues ----------------------------------------------------------------------------------


def _fictional_doc() -> dict[str, Any]:
    # A 10x10 degree block far from LA with a 2x2 hole (a lake), an island inside the lake, and a
    # second detached part: exercises MultiPolygon flattening and the even-odd rule.
    return {
        "version": "test-1",
        "source": "fictional",
        "regions": [
            {
                "code": "lakeland",
                "name": "Lakeland",
                "zips": ["12345", "12346"],
                "polygons": [
                    _square(0, 0, 10, 10),
                    _square(4, 4, 6, 6),
                    [[4.5, 4.5], [5.5, 4.5], [5.5, 5.5], [4.5, 5.5]],  # open ring: closing is implied
                    _square(20, 0, 22, 2),
                ],
            },
            {"code": "zip_only", "name": "ZIP only", "zips": ["54321"], "polygons": []},
        ],
    }


def test_custom_catalogue_from_path(tmp_path: Path) -> None:
    cat = Catalogue.load(_write(tmp_path, _fictional_doc()))
    assert cat.codes == ("lakeland", "zip_only")
    assert cat.version == "test-1"
    assert cat.resolve_zip("12345-0001") == "lakeland"
    assert cat.resolve_zip("54321") == "zip_only"
    assert cat.resolve_zip("90011") is None
    assert cat.resolve(None, 33.94, -118.24) is None
    assert cat.resolve_point(2.0, 2.0) == "lakeland"  # lat, lon order; the file is [lon, lat]
    assert cat.resolve_point(1.0, 21.0) == "lakeland"  # detached part


def test_custom_catalogue_accepts_str_path(tmp_path: Path) -> None:
    cat = Catalogue.load(str(_write(tmp_path, _fictional_doc())))
    assert cat.resolve_zip("12346") == "lakeland"


@pytest.mark.parametrize(
    ("lat", "lon", "expected"),
    [
        (1.0, 1.0, "lakeland"),
        (4.2, 4.2, None),  # in the lake
        (5.9, 5.0, None),  # in the lake, near its edge
        (5.0, 5.0, "lakeland"),  # on the island in the lake
        (6.5, 6.5, "lakeland"),  # just outside the lake
        (9.99, 9.99, "lakeland"),
        (11.0, 5.0, None),
        (1.0, 15.0, None),  # between the two parts, inside the combined bounding box
    ],
)
def test_holes_follow_even_odd_rule(tmp_path: Path, lat: float, lon: float, expected: str | None) -> None:
    cat = Catalogue.load(_write(tmp_path, _fictional_doc()))
    assert cat.resolve_point(lat, lon) == expected


def test_catalogue_built_in_code() -> None:
    region = Region(
        code="tri",
        name="Triangle",
        zips=frozenset({"11111"}),
        polygons=(((0.0, 0.0), (2.0, 0.0), (0.0, 2.0)),),
    )
    cat = Catalogue("v", (region,))
    assert cat.resolve_point(0.5, 0.5) == "tri"
    assert cat.resolve_point(1.5, 1.5) is None


def _mutated(**changes: Any) -> dict[str, Any]:
    doc = _fictional_doc()
    doc["regions"][0].update(changes)
    return doc


@pytest.mark.parametrize(
    "doc",
    [
        pytest.param(
            {
                "version": "x",
                "regions": [
                    {"code": "a", "name": "A", "zips": ["11111"], "polygons": []},
                    {"code": "b", "name": "B", "zips": ["11111"], "polygons": []},
                ],
            },
            id="zip-in-two-regions",
        ),
        pytest.param(
            {
                "version": "x",
                "regions": [
                    {"code": "a", "name": "A", "zips": [], "polygons": []},
                    {"code": "a", "name": "A again", "zips": [], "polygons": []},
                ],
            },
            id="duplicate-code",
        ),
        pytest.param({"version": "x", "regions": []}, id="no-regions"),
        pytest.param({"regions": []}, id="no-version"),
        pytest.param(_mutated(zips=["1234"]), id="short-zip"),
        pytest.param(_mutated(zips=["12345-6789"]), id="zip-plus-four-in-file"),
        pytest.param(_mutated(code="Bad Code"), id="bad-code"),
        pytest.param(_mutated(polygons=[[[0, 0], [1, 1], [0, 0]]]), id="degenerate-ring"),
        pytest.param(_mutated(polygons=[[[0, 0], [1, 0], [1, 95], [0, 0]]]), id="latitude-out-of-range"),
        pytest.param(_mutated(polygons=[[[0, 0, 0], [1, 0, 0], [1, 1, 0]]]), id="3d-vertex"),
        pytest.param(_mutated(zips="12345"), id="zips-not-a-list"),
        pytest.param(_mutated(colour="red"), id="unknown-field"),
    ],
)
def test_invalid_catalogues_are_rejected(tmp_path: Path, doc: dict[str, Any]) -> None:
    with pytest.raises(CatalogueError):
        Catalogue.load(_write(tmp_path, doc))


def test_unreadable_catalogues_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read"):
        Catalogue.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(CatalogueError, match="malformed"):
        Catalogue.load(bad)


# --- agreement with the reference boundaries ------------------------------------------------------------


def _reference_rings(features: list[dict[str, Any]], spa: int) -> list[list[list[float]]]:
    (feature,) = [f for f in features if f["properties"]["SPA_NUM"] == spa]
    geometry = feature["geometry"]
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    return [ring for polygon in polygons for ring in polygon]


def _reference_inside(rings: list[list[list[float]]], lon: float, lat: float) -> bool:
    # Deliberately independent of the code under test: plain even-odd ray casting over every ring.
    inside = False
    for ring in rings:
        j = len(ring) - 1
        for i in range(len(ring)):
            xi, yi = ring[i][0], ring[i][1]
            xj, yj = ring[j][0], ring[j][1]
            if (yi > lat) != (yj > lat) and lon < (xj - xi) * (lat - yi) / (yj - yi) + xi:
                inside = not inside
            j = i
    return inside


def test_catalogue_agrees_with_reference_spa_boundaries(catalogue: Catalogue) -> None:
    if not REFERENCE_GEOJSON.is_file():
        pytest.fail(f"reference boundaries not found at {REFERENCE_GEOJSON} (../shared/geo, beside the repo)")
    features = json.loads(REFERENCE_GEOJSON.read_text(encoding="utf-8"))["features"]
    reference = {SOUTH: _reference_rings(features, 6), SFV: _reference_rings(features, 2)}
    boxes = {
        code: (
            min(p[0] for r in rings for p in r),
            min(p[1] for r in rings for p in r),
            max(p[0] for r in rings for p in r),
            max(p[1] for r in rings for p in r),
        )
        for code, rings in reference.items()
    }
    # Sample a grid over both regions plus a margin, so neighbouring SPAs are sampled too.
    min_lon = min(b[0] for b in boxes.values()) - 0.05
    min_lat = min(b[1] for b in boxes.values()) - 0.05
    max_lon = max(b[2] for b in boxes.values()) + 0.05
    max_lat = max(b[3] for b in boxes.values()) + 0.05
    steps = 70
    agree = total = 0
    counts = {SOUTH: 0, SFV: 0, None: 0}
    for i in range(steps):
        # Offsets by an irrational-ish fraction keep grid points off the 5-decimal vertex lattice.
        lat = min_lat + (i + 0.5137) * (max_lat - min_lat) / steps
        for k in range(steps):
            lon = min_lon + (k + 0.4711) * (max_lon - min_lon) / steps
            expected: str | None = None
            for code, (x0, y0, x1, y1) in boxes.items():
                if x0 <= lon <= x1 and y0 <= lat <= y1 and _reference_inside(reference[code], lon, lat):
                    expected = code
                    break
            counts[expected] += 1
            total += 1
            agree += catalogue.resolve_point(lat, lon) == expected
    # Guard against a vacuous pass: both regions and the area outside them are actually sampled.
    assert counts[SOUTH] >= 30, counts
    assert counts[SFV] >= 300, counts
    assert counts[None] >= 1000, counts
    assert agree / total >= 0.99, f"{agree}/{total} agree"
