"""A world map with station markers, rendered on the server as one inline SVG.

The outline is Natural Earth 1:110m via the vendored ``world-atlas`` TopoJSON
(``data/README.md``), decoded here once per process; the browser receives only SVG: no
script, no tiles, no font or image requests (a map tile server would learn which staff
look at which places), and no ``style`` attribute, so a strict CSP needs no exception.

Projection: equirectangular on a 1000 x 500 plane, ``x = (lon + 180) * k``,
``y = (90 - lat) * k`` with ``k = 1000 / 360``. The rendered viewBox stops at 60°S
(``VIEWBOX_HEIGHT``): Antarctica is left out to give the inhabited world more room, and a
marker further south is pinned to the bottom edge rather than silently hidden.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from itertools import pairwise
from typing import Any

from markupsafe import Markup

from app.reporting.charts import SVG_NAMESPACE, stable_element_id, svg_text

MAP_WIDTH = 1000.0
MAP_HEIGHT = 500.0
SOUTHERNMOST_LATITUDE = -60.0
_SCALE = MAP_WIDTH / 360.0
VIEWBOX_HEIGHT = round((90.0 - SOUTHERNMOST_LATITUDE) * _SCALE, 1)

_DATA_FILE = "countries-110m.json"
# Outline coordinates are kept as integer tenths of a viewBox unit: rounding once to one
# decimal keeps the SVG small, and relative path steps computed from integers never drift.
_HALF_WIDTH_TENTHS = round(MAP_WIDTH * 10 / 2)

_MARKER_MIN_RADIUS = 3.0
_MARKER_MAX_RADIUS = 15.0

# A same-site path: one leading "/" and RFC 3986 characters only. A second "/" or a "\"
# (browsers read "/\evil" as "//evil"), whitespace or control characters (stripped by URL
# parsers, so "/\t/evil" becomes "//evil") could turn it into a link to another origin.
_SAME_SITE_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@%/?#\[\]]*")

LonLat = tuple[float, float]
Ring = tuple[LonLat, ...]
_Point = tuple[int, int]


def _check_position(latitude: float, longitude: float) -> None:
    if not (math.isfinite(latitude) and math.isfinite(longitude)):
        raise ValueError("latitude and longitude must be finite numbers")
    if not (-90.0 <= latitude <= 90.0 and -180.0 <= longitude <= 180.0):
        raise ValueError("latitude must be within -90..90 and longitude within -180..180")


@dataclass(frozen=True, slots=True)
class MapMarker:
    """One marker; ``label`` is untrusted and escaped when rendered.

    Raises ValueError on construction for an out-of-range position, a negative count, or
    an ``href`` that is not a same-site path (starts with "/", not "//" or "/\\").
    """

    label: str
    latitude: float
    longitude: float
    count: int
    href: str | None = None

    def __post_init__(self) -> None:
        _check_position(self.latitude, self.longitude)
        if type(self.count) is not int or self.count < 0:
            raise ValueError("a marker count is a non-negative int")
        if self.href is not None and not _SAME_SITE_PATH.fullmatch(self.href):
            raise ValueError("a marker link must be a same-site path such as /stations/3")


def project(latitude: float, longitude: float) -> tuple[float, float]:
    """Equirectangular projection onto the 1000 x 500 plane.

    (90, -180) -> (0, 0), (0, 0) -> (500, 250), (-90, 180) -> (1000, 500). The map's viewBox
    shows y from 0 to ``VIEWBOX_HEIGHT`` (60°S). ValueError outside the valid ranges.
    """
    _check_position(latitude, longitude)
    return (longitude + 180.0) * _SCALE, (90.0 - latitude) * _SCALE


# --- TopoJSON -------------------------------------------------------------------------------
# A topology stores each shared boundary once as an "arc": a list of quantized, delta-encoded
# points, decoded with transform.scale/translate. A polygon is a list of rings, a ring a list
# of arc indexes; index ~i (negative) means arc i reversed. Consecutive arcs share one point.


@dataclass(frozen=True, slots=True)
class _Topology:
    arcs: tuple[Ring, ...]
    countries: tuple[tuple[str | None, tuple[tuple[tuple[int, ...], ...], ...]], ...]
    land: tuple[tuple[tuple[int, ...], ...], ...]


def _polygons(geometry: dict[str, Any]) -> tuple[tuple[tuple[int, ...], ...], ...]:
    if geometry["type"] == "Polygon":
        rings_of_polygons = [geometry["arcs"]]
    elif geometry["type"] == "MultiPolygon":
        rings_of_polygons = geometry["arcs"]
    else:  # null geometries (no arcs) draw nothing
        return ()
    return tuple(tuple(tuple(int(ref) for ref in ring) for ring in polygon) for polygon in rings_of_polygons)


@functools.cache
def _topology() -> _Topology:
    raw = json.loads((files("app.reporting") / "data" / _DATA_FILE).read_text(encoding="utf-8"))
    (scale_x, scale_y), (shift_x, shift_y) = raw["transform"]["scale"], raw["transform"]["translate"]
    arcs: list[Ring] = []
    for quantized in raw["arcs"]:
        x = y = 0
        points: list[LonLat] = []
        for dx, dy in quantized:
            x += dx
            y += dy
            points.append((x * scale_x + shift_x, y * scale_y + shift_y))
        arcs.append(tuple(points))
    countries = tuple(
        (geometry.get("id"), _polygons(geometry)) for geometry in raw["objects"]["countries"]["geometries"]
    )
    land = tuple(
        polygon for geometry in raw["objects"]["land"]["geometries"] for polygon in _polygons(geometry)
    )
    return _Topology(arcs=tuple(arcs), countries=countries, land=land)


def _stitch(arcs: Sequence[Ring], refs: Iterable[int]) -> Ring:
    points: list[LonLat] = []
    for ref in refs:
        arc = arcs[ref] if ref >= 0 else arcs[~ref][::-1]
        points.extend(arc[1:] if points else arc)
    return tuple(points)


def country_outline(country_id: str) -> tuple[Ring, ...]:
    """The rings, as (longitude, latitude), of one country by ISO 3166-1 numeric id ("372").

    KeyError if the vendored data has no such country.
    """
    topology = _topology()
    for geometry_id, polygons in topology.countries:
        if geometry_id == country_id:
            return tuple(_stitch(topology.arcs, ring) for polygon in polygons for ring in polygon)
    raise KeyError(country_id)


# --- SVG path data --------------------------------------------------------------------------


def _number(tenths: int) -> str:
    sign = "-" if tenths < 0 else ""
    whole, fraction = divmod(abs(tenths), 10)
    if fraction == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole or ''}.{fraction}"


def _to_tenths(line: Ring) -> list[_Point]:
    points: list[_Point] = []
    for longitude, latitude in line:
        point = (round((longitude + 180.0) * _SCALE * 10), round((90.0 - latitude) * _SCALE * 10))
        if not points or point != points[-1]:
            points.append(point)
    return points


def _wraps(points: Sequence[_Point]) -> list[int]:
    return [i for i in range(1, len(points)) if abs(points[i][0] - points[i - 1][0]) > _HALF_WIDTH_TENTHS]


def _split_at_antimeridian(points: list[_Point], *, closed: bool) -> list[list[_Point]]:
    """Cut a line where it jumps more than half the map width (Fiji, Chukotka cross 180°).

    Drawing that step would put a horizontal stroke across the whole map. A closed ring is
    first rotated to start just after a jump, so each piece runs from map edge to map edge
    and the implicit closure SVG applies when filling runs along the edge, not across land.
    """
    jumps = _wraps(points)
    if not jumps:
        return [points]
    if closed:
        points = points[jumps[0] :] + points[1 : jumps[0]]
        jumps = _wraps(points)
    starts = [0, *jumps]
    ends = [*jumps, len(points)]
    return [points[start:end] for start, end in zip(starts, ends, strict=True)]


def _path_data(lines: Iterable[Ring], *, closed: bool) -> str:
    subpaths: list[str] = []
    for line in lines:
        points = _to_tenths(line)
        pieces = _split_at_antimeridian(points, closed=closed)
        close = closed and len(pieces) == 1
        for piece in pieces:
            if close and len(piece) > 1 and piece[0] == piece[-1]:
                del piece[-1]  # "z" draws the closing step
            if len(piece) < 2:
                continue
            steps: list[str] = []
            for (x0, y0), (x1, y1) in pairwise(piece):
                steps.extend((_number(x1 - x0), _number(y1 - y0)))
            # Relative steps are much shorter than absolute coordinates; a "-" separates
            # numbers by itself, so a space is needed only before a non-negative one.
            body = "".join(
                step if step.startswith("-") or i == 0 else f" {step}" for i, step in enumerate(steps)
            )
            subpaths.append(f"M{_number(piece[0][0])} {_number(piece[0][1])}l{body}{'z' if close else ''}")
    return "".join(subpaths)


@dataclass(frozen=True, slots=True)
class _Outline:
    land: str  # filled coastlines
    borders: str  # country borders inside land, each drawn once, stroke only


@functools.cache
def _outline() -> _Outline:
    """Path data for land and borders, computed once per process.

    Land comes from the topology's merged "land" object and borders from the arcs shared by
    two countries, so every boundary is drawn once: drawing each country's rings separately
    repeats every shared border and came to about 69 KB, over the page budget.
    """
    topology = _topology()
    land_rings: list[Ring] = []
    for polygon in topology.land:
        rings = [_stitch(topology.arcs, ring) for ring in polygon]
        if max(latitude for _, latitude in rings[0]) < SOUTHERNMOST_LATITUDE:
            continue  # Antarctica: outside the viewBox
        land_rings.extend(rings)
    uses: dict[int, int] = {}
    for _, polygons in topology.countries:
        for polygon in polygons:
            for ring in polygon:
                for ref in ring:
                    arc = ref if ref >= 0 else ~ref
                    uses[arc] = uses.get(arc, 0) + 1
    borders = [topology.arcs[arc] for arc, count in sorted(uses.items()) if count > 1]
    return _Outline(land=_path_data(land_rings, closed=True), borders=_path_data(borders, closed=False))


def outline_path_data() -> tuple[str, str]:
    """The (land, borders) SVG path ``d`` strings in viewBox units, as drawn by the map."""
    outline = _outline()
    return outline.land, outline.borders


def _marker_radius(count: int, largest: int) -> float:
    # Area, not radius, proportional to the count: the eye compares areas.
    if largest <= 0:
        return _MARKER_MIN_RADIUS
    return _MARKER_MIN_RADIUS + (_MARKER_MAX_RADIUS - _MARKER_MIN_RADIUS) * math.sqrt(count / largest)


def render_world_map(markers: Sequence[MapMarker], *, title: str) -> Markup:
    """The world map with one ``<circle>`` per marker, as a complete inline ``<svg>``.

    Marker area grows with ``count`` relative to the largest count on this map (a count of
    0 still gets the minimum radius); each circle has a ``<title>`` "label: count", and is
    wrapped in ``<a href>`` when the marker has a (same-site) ``href``. Larger markers are
    drawn first so smaller ones on top stay hoverable and clickable.

    The root has ``role="img"`` unless a marker is a link: ARIA makes the children of an
    image presentational, which would hide the links from screen readers, so a map with
    links is a labelled ``role="group"`` instead.
    """
    outline = _outline()
    largest = max((marker.count for marker in markers), default=0)
    circles: list[str] = []
    for marker in sorted(markers, key=lambda m: m.count, reverse=True):
        x, y = project(max(marker.latitude, SOUTHERNMOST_LATITUDE), marker.longitude)
        name = svg_text(f"{marker.label}: {marker.count}")
        radius = _marker_radius(marker.count, largest)
        circle = (
            f'<circle class="marker" cx="{x:.1f}" cy="{y:.1f}" r="{radius:.1f}" '
            f'fill="#b42318" fill-opacity="0.7" stroke="#ffffff" stroke-width="1">'
            f"<title>{name}</title></circle>"
        )
        if marker.href is not None:
            circle = f'<a href="{svg_text(marker.href)}" aria-label="{name}">{circle}</a>'
        circles.append(circle)
    element_id = stable_element_id("world-map", title, *circles)
    role = "group" if any(marker.href is not None for marker in markers) else "img"
    svg = (
        f'<svg xmlns="{SVG_NAMESPACE}" viewBox="0 0 {MAP_WIDTH:g} {VIEWBOX_HEIGHT:g}" class="world-map" '
        f'role="{role}" aria-labelledby="{element_id}-title">'
        f'<title id="{element_id}-title">{svg_text(title)}</title>'
        f'<path class="land" d="{outline.land}" fill="#dde3ea" fill-rule="evenodd" stroke="#8a96a3" '
        f'stroke-width="0.5" stroke-linejoin="round"/>'
        f'<path class="borders" d="{outline.borders}" fill="none" stroke="#ffffff" stroke-width="0.5" '
        f'stroke-linejoin="round"/>' + "".join(circles) + "</svg>"
    )
    return Markup(svg)  # noqa: S704 -- path data is generated digits; every text went through svg_text()
