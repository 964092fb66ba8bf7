"""Bar charts for the staff statistics page, rendered on the server as inline SVG.

The output is static markup: no script, no ``style`` attribute (so a strict CSP with no
``'unsafe-inline'`` still renders it), no external reference. Colours and fonts are SVG
presentation attributes, which any page CSS overrides through the ``class`` names
(``chart``, ``bar``, ``bar-label``, ``bar-value``, ``bar-suppressed``, ``bar-more``, ``axis``,
``grid``, ``tick``).

Every chart has a bounded size whatever the data: the month chart always has the same viewBox
(more months make narrower columns, not a wider chart), and the bar chart is as tall as its
rows up to ``MAX_BAR_ROWS`` (beyond that, one last row says how many more there are; every pair
stays in ``<desc>``). A count axis with round ticks goes from 0 to a round number at or above
the largest value, so a single 1 is a bar reaching "1", not a giant number.

Every label reaches the SVG through :func:`svg_text`: labels come from the database and are
assumed hostile.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

SVG_NAMESPACE = "http://www.w3.org/2000/svg"

# XML 1.0 forbids these code points even as character references; one of them in a label
# would make the whole SVG ill-formed (and an XML consumer would reject the page).
_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_TEXT_COLOUR = "#1f2933"
_MUTED_COLOUR = "#616e7c"  # 4.9:1 on white
_BAR_COLOUR = "#2f6f9f"
_AXIS_COLOUR = "#7b8794"
_GRID_COLOUR = "#d9dee3"
# Sized for a phone, where a chart is drawn at about three quarters of its viewBox (16 units:
# 12px); on a laptop it is drawn at about 1.2 (19px).
_FONT = 'font-family="system-ui, sans-serif" font-size="16"'
_SMALL_FONT = 'font-size="13"'

# Every chart is this wide in viewBox units; page CSS scales it to the column (staff.css).
CHART_WIDTH = 480
_PADDING = 8
_TICK_STEPS = 5  # at most this many steps on a count axis

# Horizontal chart geometry, in viewBox units.
MAX_BAR_ROWS = 10
_LABEL_RIGHT = 164
_BAR_LEFT = 172
_BAR_MAX_LENGTH = 260  # room to its right for the value
_ROW_HEIGHT = 26
_BAR_THICKNESS = 18
_AXIS_SPACE = 28  # below the last row: the axis line and its tick labels
_LABEL_CHARS = 18


def svg_text(value: str) -> Markup:
    """Escape ``value`` for SVG text or a double-quoted attribute, dropping XML-forbidden characters."""
    return escape(_XML_FORBIDDEN.sub("", value))


def stable_element_id(kind: str, *parts: str) -> str:
    """An id derived from the content, for ``aria-labelledby``.

    Derived rather than random so the same input renders byte-identical output (cacheable,
    testable); different charts on one page get different ids because their content differs.
    """
    digest = hashlib.sha256("\x00".join((kind, *parts)).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{kind}-{digest[:12]}"


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int | None  # None = suppressed: shown as ``suppressed_label``, no bar length revealed

    def __post_init__(self) -> None:
        # The value is interpolated into markup; only a real int (not bool, not str) is safe there.
        if self.value is not None and (type(self.value) is not int or self.value < 0):
            raise ValueError("a bar value is a non-negative int or None")


def _shorten(label: str, limit: int) -> str:
    # SVG text does not wrap; the full label stays in the row's <title> and in <desc>.
    return label if len(label) <= limit else label[: limit - 1] + "…"


def _value_text(bar: Bar, suppressed_label: str) -> str:
    return suppressed_label if bar.value is None else str(bar.value)


def _scale_max(bars: Sequence[Bar]) -> int:
    # Suppressed bars do not take part in the scale: their value must not shape any length.
    return max((bar.value for bar in bars if bar.value is not None), default=0)


def axis_ticks(largest: int) -> list[int]:
    """The ticks of a count axis: 0 up to a round number at or above ``largest``, in at most
    five equal whole steps of 1, 2 or 5 times a power of ten (counts are whole numbers).

    ``axis_ticks(1) == [0, 1]``, ``axis_ticks(7) == [0, 2, 4, 6, 8]``, and no largest value
    (0, or every bar suppressed) still gives an axis, ``[0, 1]``.
    """
    if largest <= 0:
        return [0, 1]
    magnitude = 1
    while True:
        for multiple in (1, 2, 5):
            step = multiple * magnitude
            steps = -(-largest // step)  # ceiling division
            if steps <= _TICK_STEPS:
                return list(range(0, (steps + 1) * step, step))
        magnitude *= 10


def _open_svg(width: float, height: float, *, css_class: str, element_id: str, described: bool) -> str:
    # width/height give the chart its natural size and aspect ratio (where no CSS applies);
    # the staff CSS scales it to the column, never taller than part of the viewport. Drawn
    # from the top left, so a chart kept shorter than its column stays under its heading.
    described_by = f' aria-describedby="{element_id}-desc"' if described else ""
    return (
        f'<svg xmlns="{SVG_NAMESPACE}" viewBox="0 0 {width:g} {height:g}" '
        f'width="{width:g}" height="{height:g}" preserveAspectRatio="xMinYMin meet" class="{css_class}" '
        f'role="img" aria-labelledby="{element_id}-title"{described_by} {_FONT} fill="{_TEXT_COLOUR}">'
    )


def _title_and_desc(element_id: str, title: str, bars: Sequence[Bar], suppressed_label: str) -> str:
    description = "; ".join(f"{bar.label}: {_value_text(bar, suppressed_label)}" for bar in bars)
    return (
        f'<title id="{element_id}-title">{svg_text(title)}</title>'
        f'<desc id="{element_id}-desc">{svg_text(description)}</desc>'
    )


def _empty_chart(css_class: str, title: str, empty_label: str) -> Markup:
    element_id = stable_element_id(css_class, title, empty_label)
    svg = (
        _open_svg(CHART_WIDTH, 48, css_class=f"chart {css_class}", element_id=element_id, described=False)
        + f'<title id="{element_id}-title">{svg_text(title)}</title>'
        + f'<text x="8" y="28" fill="{_MUTED_COLOUR}">{svg_text(empty_label)}</text></svg>'
    )
    return Markup(svg)  # noqa: S704 -- every interpolated text went through svg_text()


def _count_axis(
    ticks: Sequence[int], position: Callable[[int], float], *, vertical: bool, span: tuple[float, float]
) -> str:
    """Grid lines and labels at each tick; ``position`` maps a count to x (bars) or y (columns),
    ``span`` is where the grid lines run across the other direction."""
    parts: list[str] = []
    for tick in ticks:
        at = round(position(tick), 1)
        if vertical:
            parts.append(
                f'<line class="grid" x1="{span[0]:g}" y1="{at:g}" x2="{span[1]:g}" y2="{at:g}" '
                f'stroke="{_GRID_COLOUR}"/>'
                f'<text class="tick" x="{span[0] - 6:g}" y="{at + 4:g}" text-anchor="end" {_SMALL_FONT} '
                f'fill="{_MUTED_COLOUR}">{tick}</text>'
            )
        else:
            parts.append(
                f'<line class="grid" x1="{at:g}" y1="{span[0]:g}" x2="{at:g}" y2="{span[1]:g}" '
                f'stroke="{_GRID_COLOUR}"/>'
                f'<text class="tick" x="{at:g}" y="{span[1] + 18:g}" text-anchor="middle" {_SMALL_FONT} '
                f'fill="{_MUTED_COLOUR}">{tick}</text>'
            )
    return f'<g class="axis" aria-hidden="true">{"".join(parts)}</g>'


def render_bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    suppressed_label: str = "fewer than 3",
    empty_label: str = "No data yet.",
    more_label: str = "and {count} more",
) -> Markup:
    """A horizontal bar chart, one row per bar in the order given, as an inline ``<svg>``.

    Bar length is ``value / top of the axis``, the axis running from 0 to a round number at or
    above the largest unsuppressed value; a suppressed bar (value None) draws no ``<rect>`` and
    shows ``suppressed_label``. At most ``MAX_BAR_ROWS`` rows: with more bars, the last row
    says ``more_label`` (``{count}``: how many are not drawn). ``<desc>`` lists every
    "label: value" pair for screen readers. No bars renders ``empty_label``.
    """
    if not bars:
        return _empty_chart("bar-chart", title, empty_label)
    shown = list(bars) if len(bars) <= MAX_BAR_ROWS else list(bars[: MAX_BAR_ROWS - 1])
    hidden = len(bars) - len(shown)
    ticks = axis_ticks(_scale_max(bars))
    axis_top = ticks[-1]
    axis_y = _PADDING + (len(shown) + (1 if hidden else 0)) * _ROW_HEIGHT
    height = axis_y + _AXIS_SPACE

    def x_of(count: int) -> float:
        return _BAR_LEFT + count / axis_top * _BAR_MAX_LENGTH

    parts: list[str] = []
    if any(bar.value is not None for bar in bars):  # no axis when every bar is withheld
        parts.append(_count_axis(ticks, x_of, vertical=False, span=(_PADDING, axis_y)))
    for index, bar in enumerate(shown):
        top = _PADDING + index * _ROW_HEIGHT
        text_y = top + _ROW_HEIGHT / 2 + 5.5
        row = [
            f"<g><title>{svg_text(bar.label)}: {svg_text(_value_text(bar, suppressed_label))}</title>",
            f'<text class="bar-label" x="{_LABEL_RIGHT}" y="{text_y:g}" text-anchor="end">'
            f"{svg_text(_shorten(bar.label, _LABEL_CHARS))}</text>",
        ]
        if bar.value is None:
            row.append(
                f'<text class="bar-suppressed" x="{_BAR_LEFT + 6}" y="{text_y:g}" fill="{_MUTED_COLOUR}">'
                f"{svg_text(suppressed_label)}</text>"
            )
        else:
            length = round(x_of(bar.value) - _BAR_LEFT, 1)
            bar_y = top + (_ROW_HEIGHT - _BAR_THICKNESS) / 2
            row.append(
                f'<rect class="bar" x="{_BAR_LEFT}" y="{bar_y:g}" width="{length:g}" '
                f'height="{_BAR_THICKNESS}" fill="{_BAR_COLOUR}"/>'
                f'<text class="bar-value" x="{_BAR_LEFT + length + 6:g}" y="{text_y:g}">'
                f"{svg_text(str(bar.value))}</text>"
            )
        row.append("</g>")
        parts.append("".join(row))
    if hidden:
        text_y = _PADDING + len(shown) * _ROW_HEIGHT + _ROW_HEIGHT / 2 + 5.5
        more = more_label.format(count=hidden)
        parts.append(
            f"<g><title>{svg_text(more)}</title>"
            f'<text class="bar-more" x="{_LABEL_RIGHT}" y="{text_y:g}" text-anchor="end" '
            f'fill="{_MUTED_COLOUR}">{svg_text(more)}</text></g>'
        )
    parts.append(
        f'<line class="axis-line" x1="{_BAR_LEFT}" y1="{axis_y}" x2="{_BAR_LEFT}" y2="{_PADDING}" '
        f'stroke="{_AXIS_COLOUR}"/>'
    )
    element_id = stable_element_id("bar-chart", title, *(f"{bar.label}\x00{bar.value}" for bar in bars))
    svg = (
        _open_svg(CHART_WIDTH, height, css_class="chart bar-chart", element_id=element_id, described=True)
        + _title_and_desc(element_id, title, bars, suppressed_label)
        + "".join(parts)
        + "</svg>"
    )
    return Markup(svg)  # noqa: S704 -- every interpolated text went through svg_text()


# Vertical (month) chart geometry, in viewBox units: the same whatever the number of months.
MONTH_CHART_HEIGHT = 280
_PLOT_LEFT = 48  # tick labels to its left
_PLOT_RIGHT = CHART_WIDTH - _PADDING
_PLOT_TOP = 28  # room for the value above the tallest column
_BASELINE = 240
_COLUMN_MAX_WIDTH = 36
_MONTH_LABEL_WIDTH = 64  # "2026-03" at 13 units, with a gap: fewer labels when columns are narrower
_VALUE_MIN_SLOT = 30  # narrower slots leave the value to <title> and <desc>
_MONTH_LABEL_CHARS = 10


def render_month_chart(
    months: Sequence[Bar],
    *,
    title: str,
    suppressed_label: str = "fewer than 3",
    empty_label: str = "No data yet.",
) -> Markup:
    """A vertical bar chart, one column per month, drawn left to right in the order given.

    The caller passes the months in time order (labels like "2026-03"). The chart is always
    ``CHART_WIDTH`` by ``MONTH_CHART_HEIGHT``: the months share its width, and with many of them
    only every few months is labelled. Heights are ``value / top of the axis`` as in
    :func:`render_bar_chart`; suppressed months draw no ``<rect>`` and show
    ``suppressed_label`` (rotated to fit the column); ``<desc>`` lists every pair; escaping
    everywhere.
    """
    if not months:
        return _empty_chart("month-chart", title, empty_label)
    ticks = axis_ticks(_scale_max(months))
    axis_top = ticks[-1]
    plot_height = _BASELINE - _PLOT_TOP
    slot = (_PLOT_RIGHT - _PLOT_LEFT) / len(months)
    column_width = round(min(_COLUMN_MAX_WIDTH, slot * 0.7), 2)
    label_every = max(1, math.ceil(_MONTH_LABEL_WIDTH / slot))

    def y_of(count: int) -> float:
        return _BASELINE - count / axis_top * plot_height

    parts: list[str] = []
    if any(month.value is not None for month in months):
        parts.append(_count_axis(ticks, y_of, vertical=True, span=(_PLOT_LEFT, _PLOT_RIGHT)))
    for index, month in enumerate(months):
        centre = round(_PLOT_LEFT + slot * (index + 0.5), 2)
        value_text = _value_text(month, suppressed_label)
        column = [f"<g><title>{svg_text(month.label)}: {svg_text(value_text)}</title>"]
        if index % label_every == 0:
            column.append(
                f'<text class="bar-label" x="{centre:g}" y="{_BASELINE + 20}" text-anchor="middle" '
                f"{_SMALL_FONT}>{svg_text(_shorten(month.label, _MONTH_LABEL_CHARS))}</text>"
            )
        if month.value is None:
            # Rotated so a long (possibly translated) label fits in the narrow column.
            text_x = round(centre + 4, 2)
            text_y = _BASELINE - 6
            column.append(
                f'<text class="bar-suppressed" x="{text_x:g}" y="{text_y}" fill="{_MUTED_COLOUR}" '
                f'{_SMALL_FONT} transform="rotate(-90 {text_x:g} {text_y})">'
                f"{svg_text(suppressed_label)}</text>"
            )
        else:
            length = round(_BASELINE - y_of(month.value), 1)
            top = round(_BASELINE - length, 1)
            column.append(
                f'<rect class="bar" x="{round(centre - column_width / 2, 2):g}" y="{top:g}" '
                f'width="{column_width:g}" height="{length:g}" fill="{_BAR_COLOUR}"/>'
            )
            if slot >= _VALUE_MIN_SLOT:
                column.append(
                    f'<text class="bar-value" x="{centre:g}" y="{top - 5:g}" text-anchor="middle">'
                    f"{svg_text(str(month.value))}</text>"
                )
        column.append("</g>")
        parts.append("".join(column))
    element_id = stable_element_id("month-chart", title, *(f"{m.label}\x00{m.value}" for m in months))
    svg = (
        _open_svg(
            CHART_WIDTH,
            MONTH_CHART_HEIGHT,
            css_class="chart month-chart",
            element_id=element_id,
            described=True,
        )
        + _title_and_desc(element_id, title, months, suppressed_label)
        + "".join(parts)
        + f'<line class="axis-line" x1="{_PLOT_LEFT}" y1="{_BASELINE}" x2="{_PLOT_RIGHT}" y2="{_BASELINE}" '
        f'stroke="{_AXIS_COLOUR}"/>' + "</svg>"
    )
    return Markup(svg)  # noqa: S704 -- every interpolated text went through svg_text()
