"""The statistics page's SVG renderers: geometry, escaping, size, well-formedness."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from itertools import pairwise

import pytest
from markupsafe import Markup

from app.reporting.charts import (
    CHART_WIDTH,
    MAX_BAR_ROWS,
    MONTH_CHART_HEIGHT,
    Bar,
    axis_ticks,
    render_bar_chart,
    render_month_chart,
)
from app.reporting.world_map import (
    MAP_HEIGHT,
    MAP_WIDTH,
    VIEWBOX_HEIGHT,
    MapMarker,
    country_outline,
    outline_path_data,
    project,
    render_world_map,
)

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = '<script>alert(1)</script>&"'
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_COMMAND = re.compile(r"([MlZz])([^MlZz]*)")


def _subpaths(d: str) -> list[tuple[list[tuple[float, float]], bool]]:
    """Absolute points of each subpath of an "M x y l dx dy ... [z]" path, and whether it closes."""
    result: list[tuple[list[tuple[float, float]], bool]] = []
    for command, arguments in _COMMAND.findall(d):
        numbers = [float(n) for n in _NUMBER.findall(arguments)]
        if command == "M":
            assert len(numbers) == 2
            result.append(([(numbers[0], numbers[1])], False))
        elif command == "l":
            assert len(numbers) % 2 == 0
            points = result[-1][0]
            for dx, dy in zip(numbers[::2], numbers[1::2], strict=True):
                x, y = points[-1]
                points.append((x + dx, y + dy))
        else:
            result[-1] = (result[-1][0], True)
    return result


def _inside(point: tuple[float, float], rings: list[list[tuple[float, float]]]) -> bool:
    """Even-odd rule over all rings, as the land path is filled."""
    x, y = point
    inside = False
    for ring in rings:
        for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1], strict=True):
            if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
                inside = not inside
    return inside


def _parse(svg: str) -> ET.Element:
    """Parse our own output; failing to parse is the well-formedness failure the tests look for."""
    return ET.fromstring(svg)  # noqa: S314 -- our own output, not untrusted input


def _markers(count: int = 10) -> list[MapMarker]:
    return [
        MapMarker(
            label=f"Station number {i}, Somewhere Quite Long, XX",
            latitude=-50.0 + 11.0 * i,
            longitude=-170.0 + 35.0 * i,
            count=i * 7,
            href=f"/staff/stations/{i}",
        )
        for i in range(count)
    ]


def _urls_other_than_namespace(svg: str) -> list[str]:
    return [url for url in re.findall(r"https?://[^\"'\s<>]*", svg) if url != "http://www.w3.org/2000/svg"]


def _assert_inert(svg: str) -> None:
    lowered = svg.lower()
    for forbidden in ("<script", "javascript:", "style=", "foreignobject", "xlink:href", "<image", "<use"):
        assert forbidden not in lowered
    assert _urls_other_than_namespace(svg) == []


# --- outline and projection -------------------------------------------------------------------


def test_ireland_outline_is_where_ireland_is() -> None:
    rings = country_outline("372")
    longitudes = [lon for ring in rings for lon, _ in ring]
    latitudes = [lat for ring in rings for _, lat in ring]
    assert -11.0 < min(longitudes) < -9.5
    assert -6.5 < max(longitudes) < -5.5
    assert 51.0 < min(latitudes) < 52.0
    assert 55.0 < max(latitudes) < 55.8


def test_unknown_country_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        country_outline("999")


@pytest.mark.parametrize(
    ("place", "latitude", "longitude"),
    [("Athlone, IE", 53.42, -7.94), ("Nagano, JP", 36.65, 138.18), ("Brasília, BR", -15.79, -47.88)],
)
def test_land_path_covers_inland_places(place: str, latitude: float, longitude: float) -> None:
    land, _ = outline_path_data()
    rings = [points for points, _ in _subpaths(land)]
    assert _inside(project(latitude, longitude), rings), place


@pytest.mark.parametrize(("latitude", "longitude"), [(40.0, -30.0), (-30.0, 80.0), (0.0, -140.0)])
def test_land_path_leaves_oceans_empty(latitude: float, longitude: float) -> None:
    land, _ = outline_path_data()
    assert not _inside(project(latitude, longitude), [points for points, _ in _subpaths(land)])


def test_outline_has_a_reasonable_vertex_count_and_no_antarctica() -> None:
    land, borders = outline_path_data()
    points = [p for d in (land, borders) for subpath, _ in _subpaths(d) for p in subpath]
    assert 4_000 < len(points) < 12_000
    assert all(-0.05 <= x <= MAP_WIDTH + 0.05 for x, _ in points)
    assert all(0 <= y <= VIEWBOX_HEIGHT for _, y in points)


def test_no_segment_crosses_the_antimeridian() -> None:
    """A step of more than half the map width would draw a line across the whole map."""
    land, borders = outline_path_data()
    wrapped_pieces = 0
    for d in (land, borders):
        for points, closed in _subpaths(d):
            steps = pairwise(points + points[:1] if closed else points)
            assert all(abs(x1 - x0) <= MAP_WIDTH / 2 for (x0, _), (x1, _) in steps)
            if d is land and not closed:
                # An open land piece was cut at the antimeridian: the fill's implicit closing
                # step must hug the map edge rather than cut across the land.
                wrapped_pieces += 1
                (x_start, _), (x_end, _) = points[0], points[-1]
                assert min(x_start, MAP_WIDTH - x_start) < 5
                assert min(x_end, MAP_WIDTH - x_end) < 5
    assert wrapped_pieces >= 2  # Russia and Fiji cross 180°


def test_project_maps_centre_and_corners() -> None:
    assert project(0.0, 0.0) == pytest.approx((MAP_WIDTH / 2, MAP_HEIGHT / 2))
    assert project(90.0, -180.0) == pytest.approx((0.0, 0.0))
    assert project(90.0, 180.0) == pytest.approx((MAP_WIDTH, 0.0))
    assert project(-90.0, -180.0) == pytest.approx((0.0, MAP_HEIGHT))
    assert project(-90.0, 180.0) == pytest.approx((MAP_WIDTH, MAP_HEIGHT))
    assert project(-60.0, 0.0)[1] == pytest.approx(VIEWBOX_HEIGHT, abs=0.05)


@pytest.mark.parametrize(("latitude", "longitude"), [(91.0, 0.0), (0.0, -180.5), (math.nan, 0.0)])
def test_project_rejects_impossible_positions(latitude: float, longitude: float) -> None:
    with pytest.raises(ValueError, match="latitude"):
        project(latitude, longitude)


# --- world map --------------------------------------------------------------------------------


def test_map_draws_one_titled_circle_per_marker_with_radius_growing_with_count() -> None:
    markers = [
        MapMarker("Dublin, IE", 53.35, -6.26, 3),
        MapMarker("Tokyo, JP", 35.68, 139.69, 12),
        MapMarker("Nairobi, KE", -1.29, 36.82, 0),
        MapMarker("Lima, PE", -12.05, -77.04, 48),
    ]
    svg = str(render_world_map(markers, title="Stations"))
    root = _parse(svg)
    assert root.get("role") == "img"
    assert root.get("viewBox") == f"0 0 1000 {VIEWBOX_HEIGHT:g}"
    title = root.find(f"{SVG}title")
    assert title is not None
    assert title.text == "Stations"
    assert root.get("aria-labelledby") == title.get("id")
    land = root.find(f"{SVG}path[@class='land']")
    assert land is not None
    assert land.get("fill")
    assert land.get("stroke")
    circles = root.findall(f".//{SVG}circle")
    assert len(circles) == len(markers)
    radius_by_title = {c.findtext(f"{SVG}title"): float(c.get("r", "nan")) for c in circles}
    assert set(radius_by_title) == {"Dublin, IE: 3", "Tokyo, JP: 12", "Nairobi, KE: 0", "Lima, PE: 48"}
    radii = [radius_by_title[t] for t in ("Nairobi, KE: 0", "Dublin, IE: 3", "Tokyo, JP: 12", "Lima, PE: 48")]
    assert radii == sorted(radii)
    assert len(set(radii)) == 4
    assert radii[0] > 0
    dublin = next(c for c in circles if c.findtext(f"{SVG}title") == "Dublin, IE: 3")
    x, y = project(53.35, -6.26)
    assert float(dublin.get("cx", "nan")) == pytest.approx(x, abs=0.06)
    assert float(dublin.get("cy", "nan")) == pytest.approx(y, abs=0.06)
    _assert_inert(svg)


def test_map_of_only_zero_counts_still_draws_markers() -> None:
    svg = str(render_world_map([MapMarker("A", 0, 0, 0), MapMarker("B", 10, 10, 0)], title="t"))
    assert [float(c.get("r", "0")) for c in _parse(svg).iter(f"{SVG}circle")] == [3.0, 3.0]


def test_map_without_markers_is_just_the_outline() -> None:
    root = _parse(str(render_world_map([], title="No stations")))
    assert root.findall(f".//{SVG}circle") == []
    assert root.find(f"{SVG}path[@class='land']") is not None


def test_map_escapes_hostile_labels_and_title() -> None:
    marker = MapMarker(HOSTILE + "\x00\x1b", 10.0, 10.0, 2, href="/staff/stations/1?a=1&b='2'")
    svg = str(render_world_map([marker], title=HOSTILE))
    assert "<script" not in svg
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&amp;&#34;" in svg
    root = _parse(svg)  # the control characters were dropped, or this would not parse
    assert root.findtext(f"{SVG}title") == HOSTILE
    circle_title = root.findtext(f".//{SVG}circle/{SVG}title")
    assert circle_title == HOSTILE + ": 2"
    link = root.find(f"{SVG}a")
    assert link is not None
    assert link.get("href") == "/staff/stations/1?a=1&b='2'"
    _assert_inert(svg)


def test_linked_markers_are_wrapped_in_anchors_and_the_map_is_a_group() -> None:
    markers = [MapMarker("Dublin, IE", 53.35, -6.26, 3, href="/staff/stations/7"), MapMarker("X", 0, 0, 1)]
    root = _parse(str(render_world_map(markers, title="Stations")))
    links = root.findall(f"{SVG}a")
    assert [a.get("href") for a in links] == ["/staff/stations/7"]
    assert links[0].find(f"{SVG}circle") is not None
    assert links[0].get("aria-label") == "Dublin, IE: 3"
    # Children of role="img" are presentational; links must stay reachable for screen readers.
    assert root.get("role") == "group"


@pytest.mark.parametrize(
    "href",
    [
        "https://evil.example/",
        "http://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "data:text/html,x",
        "stations/1",
        "",
        '/x" onclick="alert(1)',
        "/x y",
    ],
)
def test_markers_refuse_links_off_site(href: str) -> None:
    with pytest.raises(ValueError, match="same-site"):
        render_world_map([MapMarker("Dublin, IE", 53.35, -6.26, 3, href=href)], title="Stations")


@pytest.mark.parametrize(
    ("latitude", "longitude", "count"), [(95.0, 0.0, 1), (0.0, 200.0, 1), (0.0, math.inf, 1), (0.0, 0.0, -1)]
)
def test_markers_refuse_impossible_values(latitude: float, longitude: float, count: int) -> None:
    with pytest.raises(ValueError, match=r"latitude|count"):
        MapMarker("x", latitude, longitude, count)


def test_marker_south_of_the_view_is_pinned_to_the_bottom_edge() -> None:
    root = _parse(str(render_world_map([MapMarker("McMurdo", -77.8, 166.7, 1)], title="t")))
    circle = root.find(f".//{SVG}circle")
    assert circle is not None
    assert float(circle.get("cy", "nan")) == pytest.approx(VIEWBOX_HEIGHT, abs=0.06)


def test_map_with_ten_markers_stays_small() -> None:
    svg = str(render_world_map(_markers(10), title="Stations with verified cases"))
    assert len(svg.encode("utf-8")) < 60_000
    assert len(_parse(svg).findall(f".//{SVG}circle")) == 10
    _assert_inert(svg)


def test_map_rendering_is_deterministic() -> None:
    assert render_world_map(_markers(3), title="t") == render_world_map(_markers(3), title="t")


# --- bar charts -------------------------------------------------------------------------------


def _rects(root: ET.Element) -> list[ET.Element]:
    return root.findall(f".//{SVG}rect")


def test_bar_chart_lengths_are_proportional_and_suppressed_bars_draw_nothing() -> None:
    bars = [Bar("Dublin, IE", 10), Bar("Tokyo, JP", None), Bar("Lima, PE", 5), Bar("Quito, EC", 0)]
    svg = str(render_bar_chart(bars, title="Verified cases by station", suppressed_label="fewer than 3"))
    root = _parse(svg)
    assert root.get("role") == "img"
    widths = [float(r.get("width", "nan")) for r in _rects(root)]
    assert len(widths) == 3
    assert widths[0] > 0
    assert widths[1] == pytest.approx(widths[0] / 2, abs=0.1)
    assert widths[2] == 0
    tokyo_row = next(g for g in root.iter(f"{SVG}g") if (g.findtext(f"{SVG}title") or "").startswith("Tokyo"))
    assert tokyo_row.find(f"{SVG}rect") is None
    assert "fewer than 3" in [t.text for t in tokyo_row.iter(f"{SVG}text")]
    title = root.find(f"{SVG}title")
    assert title is not None
    assert title.text == "Verified cases by station"
    assert root.get("aria-labelledby") == title.get("id")
    desc = root.find(f"{SVG}desc")
    assert desc is not None
    assert root.get("aria-describedby") == desc.get("id")
    assert root.findtext(f"{SVG}desc") == "Dublin, IE: 10; Tokyo, JP: fewer than 3; Lima, PE: 5; Quito, EC: 0"
    _assert_inert(svg)


def test_bar_chart_grows_with_the_number_of_bars() -> None:
    def height(n: int) -> float:
        return float(
            _parse(str(render_bar_chart([Bar(str(i), i) for i in range(n)], title="t"))).get("height", "nan")
        )

    assert height(1) < height(2) < height(10)


def test_all_suppressed_bars_reveal_no_length() -> None:
    root = _parse(str(render_bar_chart([Bar("a", None), Bar("b", None)], title="t")))
    assert _rects(root) == []


@pytest.mark.parametrize("render", [render_bar_chart, render_month_chart])
def test_empty_chart_says_no_data_yet(render: Callable[..., Markup]) -> None:
    svg = str(render([], title="Cases"))
    root = _parse(svg)
    assert "No data yet." in [t.text for t in root.iter(f"{SVG}text")]
    assert root.get("role") == "img"
    assert root.findtext(f"{SVG}title") == "Cases"
    assert _rects(root) == []


@pytest.mark.parametrize("render", [render_bar_chart, render_month_chart])
def test_charts_escape_hostile_text(render: Callable[..., Markup]) -> None:
    svg = str(render([Bar(HOSTILE, 4), Bar("x", None)], title=HOSTILE, suppressed_label=HOSTILE))
    assert "<script" not in svg
    root = _parse(svg)
    assert root.findtext(f"{SVG}title") == HOSTILE
    assert root.findtext(f"{SVG}desc") == f"{HOSTILE}: 4; x: {HOSTILE}"
    _assert_inert(svg)


def test_bar_values_must_be_non_negative_ints() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        Bar("x", -1)
    with pytest.raises(ValueError, match="non-negative"):
        Bar("x", "<b>5</b>")  # type: ignore[arg-type]


def test_month_chart_heights_are_proportional_in_the_given_order() -> None:
    months = [Bar("2026-01", 4), Bar("2026-02", None), Bar("2026-03", 8), Bar("2026-04", 2)]
    svg = str(render_month_chart(months, title="Verified cases per month"))
    root = _parse(svg)
    rects = _rects(root)
    heights = [float(r.get("height", "nan")) for r in rects]
    assert heights[1] > 0
    assert heights == pytest.approx([heights[1] / 2, heights[1], heights[1] / 4], abs=0.1)
    # Bars stand on one baseline and run left to right in the order given.
    bottoms = {round(float(r.get("y", "nan")) + float(r.get("height", "nan")), 1) for r in rects}
    assert len(bottoms) == 1
    xs = [float(r.get("x", "nan")) for r in rects]
    assert xs == sorted(xs)
    labels = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "bar-label"]
    assert labels == ["2026-01", "2026-02", "2026-03", "2026-04"]
    february = next(g for g in root.iter(f"{SVG}g") if g.findtext(f"{SVG}title") == "2026-02: fewer than 3")
    assert february.find(f"{SVG}rect") is None
    assert "fewer than 3" in [t.text for t in february.iter(f"{SVG}text")]
    assert root.findtext(f"{SVG}desc") == "2026-01: 4; 2026-02: fewer than 3; 2026-03: 8; 2026-04: 2"
    _assert_inert(svg)


def _size(root: ET.Element) -> tuple[float, float]:
    return float(root.get("width", "nan")), float(root.get("height", "nan"))


def test_month_chart_keeps_its_size_whatever_the_number_of_months() -> None:
    """More months make narrower columns, never a wider (or, scaled to the page, taller) chart."""
    roots = [
        _parse(str(render_month_chart([Bar(f"m{i}", i + 1) for i in range(n)], title="t")))
        for n in (1, 6, 12, 120)
    ]
    assert {root.get("viewBox") for root in roots} == {f"0 0 {CHART_WIDTH} {MONTH_CHART_HEIGHT}"}
    assert {_size(root) for root in roots} == {(CHART_WIDTH, MONTH_CHART_HEIGHT)}
    column_widths = [float(_rects(root)[0].get("width", "nan")) for root in roots]
    assert column_widths == sorted(column_widths, reverse=True)
    # With 120 months, labels are thinned out so that they do not overlap.
    many = [t for t in roots[-1].iter(f"{SVG}text") if t.get("class") == "bar-label"]
    assert 1 < len(many) <= 10
    xs = [float(t.get("x", "nan")) for t in many]
    assert all(b - a >= 60 for a, b in pairwise(xs))


def test_a_single_month_of_one_case_is_a_modest_chart_with_a_sensible_axis() -> None:
    """The demo's first case: one month, one case. Not a giant "1" filling the page."""
    svg = str(render_month_chart([Bar("2026-12", 1)], title="Cases opened by month"))
    root = _parse(svg)
    assert root.get("viewBox") == f"0 0 {CHART_WIDTH} {MONTH_CHART_HEIGHT}"
    width, height = _size(root)
    assert (width, height) == (CHART_WIDTH, MONTH_CHART_HEIGHT)
    assert height / width < 0.6  # scaled to any column width, it stays wider than tall
    assert root.get("preserveAspectRatio") == "xMinYMin meet"
    ticks = [t.text for t in root.iter(f"{SVG}text") if t.get("class") == "tick"]
    assert ticks == ["0", "1"]
    (rect,) = _rects(root)
    assert 0 < float(rect.get("width", "nan")) <= 40  # a column, not the whole plot
    assert float(rect.get("y", "nan")) >= 20  # below the top, with room for the value
    assert float(rect.get("y", "nan")) + float(rect.get("height", "nan")) < height - 20
    # Every text is drawn at the chart's font size or smaller: no number scaled up on its own.
    sizes = {float(t.get("font-size", root.get("font-size", "nan"))) for t in root.iter(f"{SVG}text")}
    assert max(sizes) <= float(root.get("font-size", "nan")) <= 16
    value = next(t for t in root.iter(f"{SVG}text") if t.get("class") == "bar-value")
    assert value.text == "1"
    assert root.findtext(f"{SVG}desc") == "2026-12: 1"
    _assert_inert(svg)


def test_a_single_bar_chart_is_short_and_many_bars_stop_growing() -> None:
    def root(n: int) -> ET.Element:
        return _parse(
            str(render_bar_chart([Bar(f"Country {i}", 100 - i % 100) for i in range(n)], title="t"))
        )

    one = root(1)
    assert _size(one)[0] == CHART_WIDTH
    assert _size(one)[1] < 80
    assert [t.text for t in one.iter(f"{SVG}text") if t.get("class") == "tick"] == [
        "0",
        "20",
        "40",
        "60",
        "80",
        "100",
    ]
    tallest = max(_size(root(n))[1] for n in (MAX_BAR_ROWS, MAX_BAR_ROWS + 1, 50, 250))
    assert tallest == _size(root(MAX_BAR_ROWS))[1]
    assert tallest / CHART_WIDTH < 2 / 3
    many = root(50)
    assert len(_rects(many)) == MAX_BAR_ROWS - 1
    assert [t.text for t in many.iter(f"{SVG}text") if t.get("class") == "bar-more"] == ["and 41 more"]
    # Every bar is still in the description.
    assert (many.findtext(f"{SVG}desc") or "").count("Country ") == 50


@pytest.mark.parametrize(
    ("largest", "ticks"),
    [
        (0, [0, 1]),
        (1, [0, 1]),
        (3, [0, 1, 2, 3]),
        (5, [0, 1, 2, 3, 4, 5]),
        (7, [0, 2, 4, 6, 8]),
        (10, [0, 2, 4, 6, 8, 10]),
        (11, [0, 5, 10, 15]),
        (23, [0, 5, 10, 15, 20, 25]),
        (480, [0, 100, 200, 300, 400, 500]),
    ],
)
def test_count_axis_has_round_whole_ticks_reaching_the_largest_value(largest: int, ticks: list[int]) -> None:
    assert axis_ticks(largest) == ticks


def test_the_axis_reveals_nothing_when_every_value_is_withheld() -> None:
    for render in (render_bar_chart, render_month_chart):
        root = _parse(str(render([Bar("a", None), Bar("b", None)], title="t")))
        assert [t for t in root.iter(f"{SVG}text") if t.get("class") == "tick"] == []
