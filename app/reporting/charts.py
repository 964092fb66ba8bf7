"""Bar charts for the staff statistics page, rendered on the server as inline SVG.

The output is static markup: no script, no ``style`` attribute (so a strict CSP with no
``'unsafe-inline'`` still renders it), no external reference. Colours and fonts are SVG
presentation attributes, which any page CSS overrides through the ``class`` names
(``chart``, ``bar``, ``bar-label``, ``bar-value``, ``bar-suppressed``).

Every label reaches the SVG through :func:`svg_text`: labels come from the database and are
assumed hostile.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

SVG_NAMESPACE = "http://www.w3.org/2000/svg"

# XML 1.0 forbids these code points even as character references; one of them in a label
# would make the whole SVG ill-formed (and an XML consumer would reject the page).
_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_TEXT_COLOUR = "#1f2933"
_MUTED_COLOUR = "#616e7c"
_BAR_COLOUR = "#2f6f9f"
_AXIS_COLOUR = "#9aa5b1"
_FONT = 'font-family="system-ui, sans-serif" font-size="12"'

# Horizontal chart geometry, in viewBox units.
_BAR_WIDTH_TOTAL = 640
_LABEL_RIGHT = 192
_BAR_LEFT = 200
_BAR_MAX_LENGTH = 340
_ROW_HEIGHT = 28
_BAR_THICKNESS = 18
_PADDING = 8
_LABEL_CHARS = 30


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


def _open_svg(width: float, height: float, *, css_class: str, element_id: str, described: bool) -> str:
    # width/height give the chart its natural size (text stays at 12px); page CSS such as
    # "max-width: 100%; height: auto" lets it shrink on narrow screens.
    described_by = f' aria-describedby="{element_id}-desc"' if described else ""
    return (
        f'<svg xmlns="{SVG_NAMESPACE}" viewBox="0 0 {width:g} {height:g}" '
        f'width="{width:g}" height="{height:g}" class="{css_class}" '
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
        _open_svg(
            _BAR_WIDTH_TOTAL, 48, css_class=f"chart {css_class}", element_id=element_id, described=False
        )
        + f'<title id="{element_id}-title">{svg_text(title)}</title>'
        + f'<text x="8" y="28" fill="{_MUTED_COLOUR}">{svg_text(empty_label)}</text></svg>'
    )
    return Markup(svg)  # noqa: S704 -- every interpolated text went through svg_text()


def render_bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    suppressed_label: str = "fewer than 3",
    empty_label: str = "No data yet.",
) -> Markup:
    """A horizontal bar chart, one row per bar in the order given, as an inline ``<svg>``.

    Bar length is ``value / max(value)`` of the unsuppressed bars; a suppressed bar (value
    None) draws no ``<rect>`` and shows ``suppressed_label``. ``<desc>`` lists every
    "label: value" pair for screen readers. No bars renders ``empty_label``.
    """
    if not bars:
        return _empty_chart("bar-chart", title, empty_label)
    scale_max = _scale_max(bars)
    height = 2 * _PADDING + len(bars) * _ROW_HEIGHT
    rows: list[str] = []
    for index, bar in enumerate(bars):
        top = _PADDING + index * _ROW_HEIGHT
        text_y = top + _ROW_HEIGHT / 2 + 4
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
            length = round(bar.value / scale_max * _BAR_MAX_LENGTH, 1) if scale_max else 0.0
            bar_y = top + (_ROW_HEIGHT - _BAR_THICKNESS) / 2
            row.append(
                f'<rect class="bar" x="{_BAR_LEFT}" y="{bar_y:g}" width="{length:g}" '
                f'height="{_BAR_THICKNESS}" fill="{_BAR_COLOUR}"/>'
                f'<text class="bar-value" x="{_BAR_LEFT + length + 6:g}" y="{text_y:g}">'
                f"{svg_text(str(bar.value))}</text>"
            )
        row.append("</g>")
        rows.append("".join(row))
    element_id = stable_element_id("bar-chart", title, *(f"{bar.label}\x00{bar.value}" for bar in bars))
    svg = (
        _open_svg(
            _BAR_WIDTH_TOTAL, height, css_class="chart bar-chart", element_id=element_id, described=True
        )
        + _title_and_desc(element_id, title, bars, suppressed_label)
        + "".join(rows)
        + "</svg>"
    )
    return Markup(svg)  # noqa: S704 -- every interpolated text went through svg_text()


# Vertical (month) chart geometry, in viewBox units.
_SLOT_WIDTH = 48
_COLUMN_WIDTH = 32
_PLOT_TOP = 24
_PLOT_HEIGHT = 180
_MONTH_LABEL_CHARS = 10


def render_month_chart(
    months: Sequence[Bar],
    *,
    title: str,
    suppressed_label: str = "fewer than 3",
    empty_label: str = "No data yet.",
) -> Markup:
    """A vertical bar chart, one column per month, drawn left to right in the order given.

    The caller passes the months in time order (labels like "2026-03"); the same rules as
    :func:`render_bar_chart` apply: heights proportional to the largest unsuppressed value,
    suppressed months draw no ``<rect>`` and show ``suppressed_label`` (rotated to fit the
    column), ``<desc>`` lists every pair, escaping everywhere.
    """
    if not months:
        return _empty_chart("month-chart", title, empty_label)
    scale_max = _scale_max(months)
    baseline = _PLOT_TOP + _PLOT_HEIGHT
    width = 2 * _PADDING + len(months) * _SLOT_WIDTH
    height = baseline + 28
    columns: list[str] = []
    for index, month in enumerate(months):
        slot_left = _PADDING + index * _SLOT_WIDTH
        centre = slot_left + _SLOT_WIDTH / 2
        column = [
            f"<g><title>{svg_text(month.label)}: {svg_text(_value_text(month, suppressed_label))}</title>",
            f'<text class="bar-label" x="{centre:g}" y="{baseline + 18}" text-anchor="middle" font-size="11">'
            f"{svg_text(_shorten(month.label, _MONTH_LABEL_CHARS))}</text>",
        ]
        if month.value is None:
            # Rotated so a long (possibly translated) label fits in the narrow column.
            text_x = centre + 4
            text_y = baseline - 6
            column.append(
                f'<text class="bar-suppressed" x="{text_x:g}" y="{text_y}" fill="{_MUTED_COLOUR}" '
                f'transform="rotate(-90 {text_x:g} {text_y})">'
                f"{svg_text(suppressed_label)}</text>"
            )
        else:
            length = round(month.value / scale_max * _PLOT_HEIGHT, 1) if scale_max else 0.0
            top = round(baseline - length, 1)
            column.append(
                f'<rect class="bar" x="{slot_left + (_SLOT_WIDTH - _COLUMN_WIDTH) / 2:g}" y="{top:g}" '
                f'width="{_COLUMN_WIDTH}" height="{length:g}" fill="{_BAR_COLOUR}"/>'
                f'<text class="bar-value" x="{centre:g}" y="{top - 4:g}" text-anchor="middle">'
                f"{svg_text(str(month.value))}</text>"
            )
        column.append("</g>")
        columns.append("".join(column))
    element_id = stable_element_id("month-chart", title, *(f"{m.label}\x00{m.value}" for m in months))
    svg = (
        _open_svg(width, height, css_class="chart month-chart", element_id=element_id, described=True)
        + _title_and_desc(element_id, title, months, suppressed_label)
        + f'<line x1="{_PADDING}" y1="{baseline}" x2="{width - _PADDING}" y2="{baseline}" '
        f'stroke="{_AXIS_COLOUR}"/>' + "".join(columns) + "</svg>"
    )
    return Markup(svg)  # noqa: S704 -- every interpolated text went through svg_text()
