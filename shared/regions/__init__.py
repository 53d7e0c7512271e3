"""Region catalogue and pure resolver from a referral's ZIP or coordinates to a pilot region code."""

from __future__ import annotations

import functools
import math
import os
import re
from importlib import resources
from pathlib import Path

import msgspec

__all__ = ["Catalogue", "CatalogueError", "Region", "Ring", "default_catalogue"]

# A ring is a closed sequence of (lon, lat) vertices, GeoJSON order. A region's rings combine under the
# even-odd rule, so a hole is simply another ring lying inside an outer ring: a GeoJSON Polygon or
# MultiPolygon flattens into this without loss as long as its parts do not overlap (valid GeoJSON).
Ring = tuple[tuple[float, float], ...]

_SHIPPED = "catalogue.json"
# ASCII digits only: `\d` would also accept other scripts' digits, which no USPS ZIP contains.
_ZIP_RE = re.compile(r"([0-9]{5})(?:-[0-9]{4})?")
_CODE_RE = re.compile(r"[a-z][a-z0-9_]*")


class CatalogueError(ValueError):
    """The catalogue file is unreadable, malformed or inconsistent."""


class Region(msgspec.Struct, frozen=True):
    """One region: its stable code, display name, ZIPs and boundary rings (see `Ring`)."""

    code: str
    name: str
    zips: frozenset[str]
    polygons: tuple[Ring, ...]


# On-disk schema, kept apart from Region so the file can carry county-specific metadata (such as the
# SPA number) without it leaking into the resolver's API.
class _RegionDoc(msgspec.Struct, forbid_unknown_fields=True):
    code: str
    name: str
    zips: list[str]
    polygons: list[list[tuple[float, float]]]
    spa: int | None = None


class _CatalogueDoc(msgspec.Struct):
    version: str
    regions: list[_RegionDoc]
    source: str = ""


class _IndexedRing(msgspec.Struct, frozen=True):
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float
    points: Ring


class _IndexedRegion(msgspec.Struct, frozen=True):
    code: str
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float
    rings: tuple[_IndexedRing, ...]


def _ring_inside(points: Ring, lon: float, lat: float) -> bool:
    # Half-open test on latitude (`>` on both ends) so a ray through a vertex counts it exactly once.
    inside = False
    x1, y1 = points[-1]
    for x2, y2 in points:
        if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
        x1, y1 = x2, y2
    return inside


def _region_contains(region: _IndexedRegion, lon: float, lat: float) -> bool:
    if not (region.min_lon <= lon <= region.max_lon and region.min_lat <= lat <= region.max_lat):
        return False
    inside = False
    for ring in region.rings:
        # Outside a ring's box the ray crosses it an even number of times, so skipping it keeps parity.
        in_box = ring.min_lon <= lon <= ring.max_lon and ring.min_lat <= lat <= ring.max_lat
        if in_box and _ring_inside(ring.points, lon, lat):
            inside = not inside
    return inside


def _is_coordinate(value: object) -> bool:
    # bool is an int subclass, but True/False as a coordinate is always a caller's mistake.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _normalise_zip(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    match = _ZIP_RE.fullmatch(value.strip())
    return match.group(1) if match else None


def _build_ring(code: str, raw: list[tuple[float, float]]) -> _IndexedRing:
    for lon, lat in raw:
        if not (_is_coordinate(lon) and _is_coordinate(lat) and -180 <= lon <= 180 and -90 <= lat <= 90):
            raise CatalogueError(f"region {code!r}: vertex ({lon}, {lat}) is not a WGS84 [lon, lat] pair")
    points: Ring = tuple((float(lon), float(lat)) for lon, lat in raw)
    if len(set(points)) < 3:
        raise CatalogueError(f"region {code!r}: a ring needs at least three distinct vertices")
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    return _IndexedRing(min(lons), min(lats), max(lons), max(lats), points)


class Catalogue:
    """An immutable set of regions with ZIP and point-in-polygon lookups."""

    __slots__ = ("_by_zip", "_index", "_regions", "_version")

    def __init__(self, version: str, regions: tuple[Region, ...]) -> None:
        if not regions:
            raise CatalogueError("a catalogue needs at least one region")
        by_zip: dict[str, str] = {}
        index: list[_IndexedRegion] = []
        seen: set[str] = set()
        for region in regions:
            if not _CODE_RE.fullmatch(region.code):
                raise CatalogueError(f"region code {region.code!r} must match {_CODE_RE.pattern}")
            if region.code in seen:
                raise CatalogueError(f"region code {region.code!r} appears twice")
            seen.add(region.code)
            for zip_code in region.zips:
                if not re.fullmatch(r"[0-9]{5}", zip_code):
                    raise CatalogueError(f"region {region.code!r}: {zip_code!r} is not a five-digit ZIP")
                # A ZIP in two regions would make routing depend on catalogue order; refuse it outright.
                if zip_code in by_zip:
                    raise CatalogueError(
                        f"ZIP {zip_code} is in both {by_zip[zip_code]!r} and {region.code!r}"
                    )
                by_zip[zip_code] = region.code
            rings = tuple(_build_ring(region.code, list(ring)) for ring in region.polygons)
            if rings:
                index.append(
                    _IndexedRegion(
                        code=region.code,
                        min_lon=min(r.min_lon for r in rings),
                        min_lat=min(r.min_lat for r in rings),
                        max_lon=max(r.max_lon for r in rings),
                        max_lat=max(r.max_lat for r in rings),
                        rings=rings,
                    )
                )
        self._version = version
        self._regions = regions
        self._by_zip = by_zip
        self._index = tuple(index)

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> Catalogue:
        """Load the shipped catalogue, or the one at `path` (e.g. another county's, set by configuration)."""
        try:
            if path is None:
                data = resources.files(__name__).joinpath(_SHIPPED).read_bytes()
            else:
                data = Path(path).read_bytes()
        except OSError as exc:
            raise CatalogueError(f"cannot read region catalogue: {exc}") from exc
        try:
            doc = msgspec.json.decode(data, type=_CatalogueDoc)
        except msgspec.DecodeError as exc:
            raise CatalogueError(f"malformed region catalogue: {exc}") from exc
        regions = tuple(
            Region(
                code=r.code,
                name=r.name,
                zips=frozenset(r.zips),
                polygons=tuple(tuple(ring) for ring in r.polygons),
            )
            for r in doc.regions
        )
        return cls(doc.version, regions)

    @property
    def version(self) -> str:
        return self._version

    @property
    def regions(self) -> tuple[Region, ...]:
        return self._regions

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(region.code for region in self._regions)

    def resolve_zip(self, zip: str) -> str | None:
        """Region code for a ZIP ("90011", "90011-1234", surrounding whitespace allowed), else None."""
        normalised = _normalise_zip(zip)
        return None if normalised is None else self._by_zip.get(normalised)

    def resolve_point(self, lat: float, lon: float) -> str | None:
        """Region code containing the WGS84 point, else None (also for NaN, infinities, out-of-range)."""
        if not (_is_coordinate(lat) and _is_coordinate(lon)):
            return None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            return None
        # Regions do not overlap in a sane catalogue; should they, the first listed wins, deterministically.
        for region in self._index:
            if _region_contains(region, float(lon), float(lat)):
                return region.code
        return None

    def resolve(self, zip: str | None, lat: float | None, lon: float | None) -> str | None:
        """Resolve a location given either as a ZIP alone or as lat and lon together; any other shape is
        out of area, because a ZIP and a point that disagree leave no safe choice of case manager."""
        if zip is not None and lat is None and lon is None:
            return self.resolve_zip(zip)
        if zip is None and lat is not None and lon is not None:
            return self.resolve_point(lat, lon)
        return None


@functools.cache
def default_catalogue() -> Catalogue:
    """The shipped catalogue, parsed once per process."""
    return Catalogue.load()
