"""Submitter text made safe to show: every invisible or direction-changing character made visible.

A submitter controls the text of a report, and some characters change how text reads without
showing themselves: U+202E RIGHT-TO-LEFT OVERRIDE shows ``+1 555 0123`` as ``3210 555 1+`` and
a name or a date backwards; an isolate (U+2066–U+2069) moves a run elsewhere on the line; a
zero-width space makes two identical-looking names, numbers or addresses different strings; a
control character may be dropped by one program and acted on by another. ``dir="auto"`` isolates
a block from the page around it but lets such a character act inside it.

So each of these characters is *replaced by a marker that names it*, never dropped silently (a
caseworker must see that something was there, and where): ``⟨U+202E⟩`` in plain text, and in HTML
a styled ``<span class="hidden-char" dir="ltr" title="U+202E RIGHT-TO-LEFT OVERRIDE">⟨U+202E⟩</span>``.
The character itself is gone from the output, so its effect is gone too; the stored text is never
changed (the staff JSON API still returns it exactly as sent).

Marked:

- every format character (Unicode category Cf), which covers the bidi controls U+061C, U+200E,
  U+200F, U+202A–U+202E and U+2066–U+2069, the zero-width characters U+200B–U+200D, U+2060–U+2064
  and U+FEFF, the soft hyphen U+00AD, the tag characters U+E0001 and U+E0020–U+E007F, the
  interlinear annotation characters U+FFF9–U+FFFB and the rest of the category;
- every control character (Cc) except line feed, carriage return and tab, which are kept as
  they are (a narrative has paragraphs);
- a lone surrogate (category Cs; the intake refuses them, this is for older rows);
- U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR: a line break that is not a line break
  in most programs, and that some renderings drop;
- the default-ignorable characters outside Cf that render as nothing: the Hangul fillers
  (U+115F, U+1160, U+3164, U+FFA0), U+034F COMBINING GRAPHEME JOINER and the Khmer inherent
  vowels U+17B4 and U+17B5; and U+2800 BRAILLE PATTERN BLANK, a common stand-in for a space
  that no filter trims;
- unassigned code points in the ranges reserved for invisible characters (U+2060–U+206F,
  U+FFF0–U+FFF8, U+E0000–U+E0FFF), which a newer browser may treat as ignorable, and the
  noncharacters (U+FDD0–U+FDEF and the last two code points of every plane);
- a variation selector (U+180B–U+180D, U+180F, U+FE00–U+FE0F, U+E0100–U+E01EF) that does not
  directly follow an ordinary character. One selector after its base is ordinary writing (the
  emoji form of ❤️, an ideographic variant, a Mongolian letter form) and is kept; a selector at
  the start, or a run of them, carries nothing a reader sees and can smuggle hidden data.

U+200C ZERO WIDTH NON-JOINER and U+200D ZERO WIDTH JOINER are marked too, although Persian
writing uses ZWNJ in ordinary words and emoji use ZWJ to build one picture from several
(👩‍👩‍👧). This is a tool for checking claims: names, phone numbers, addresses and account handles
are exactly where a joiner hides — two strings that look the same but do not match a search or
a record — and the Uyghur, Chinese and Tibetan this service mostly receives have no need of
either. The marker costs a Persian reader a few visible marks, and an emoji family shows as its
members with the joiners between them: legible, and honest about what was sent. For the same
reason the tag characters of subdivision flags (🏴 + tags, such as the flag of Scotland) are
marked: the flag shows as a black flag followed by its tags.

Not treated here: look-alike letters from other scripts (homoglyphs), which are visible and
need a different defence, and unassigned code points elsewhere, which a newer browser may show
as a new emoji.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator

from markupsafe import Markup

KEPT_CONTROLS = frozenset("\n\r\t")
MARKED_CATEGORIES = frozenset({"Cf", "Cs", "Zl", "Zp"})
INVISIBLE_OUTSIDE_CF = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")
# Reserved for default-ignorable characters: an unassigned one may be invisible in a newer font.
IGNORABLE_RESERVED_RANGES = ((0x2060, 0x206F), (0xFFF0, 0xFFF8), (0xE0000, 0xE0FFF))
VARIATION_SELECTOR_RANGES = ((0x180B, 0x180D), (0x180F, 0x180F), (0xFE00, 0xFE0F), (0xE0100, 0xE01EF))

# The C0 controls and DELETE have no Unicode name, only these aliases.
_C0_NAMES = (
    "NULL",
    "START OF HEADING",
    "START OF TEXT",
    "END OF TEXT",
    "END OF TRANSMISSION",
    "ENQUIRY",
    "ACKNOWLEDGE",
    "ALERT",
    "BACKSPACE",
    "CHARACTER TABULATION",
    "LINE FEED",
    "LINE TABULATION",
    "FORM FEED",
    "CARRIAGE RETURN",
    "SHIFT OUT",
    "SHIFT IN",
    "DATA LINK ESCAPE",
    "DEVICE CONTROL ONE",
    "DEVICE CONTROL TWO",
    "DEVICE CONTROL THREE",
    "DEVICE CONTROL FOUR",
    "NEGATIVE ACKNOWLEDGE",
    "SYNCHRONOUS IDLE",
    "END OF TRANSMISSION BLOCK",
    "CANCEL",
    "END OF MEDIUM",
    "SUBSTITUTE",
    "ESCAPE",
    "INFORMATION SEPARATOR FOUR",
    "INFORMATION SEPARATOR THREE",
    "INFORMATION SEPARATOR TWO",
    "INFORMATION SEPARATOR ONE",
)


_MARKER_ELEMENT = Markup('<span class="hidden-char" dir="ltr" title="{label}">{marker}</span>')


def _in(code: int, ranges: tuple[tuple[int, int], ...]) -> bool:
    return any(low <= code <= high for low, high in ranges)


def _noncharacter(code: int) -> bool:
    return 0xFDD0 <= code <= 0xFDEF or (code & 0xFFFE) == 0xFFFE


def _variation_selector(char: str) -> bool:
    return _in(ord(char), VARIATION_SELECTOR_RANGES)


def is_deceptive(char: str) -> bool:
    """Whether one character changes or hides text without showing itself (a variation selector is
    judged by its neighbour: see ``visible_text``)."""
    category = unicodedata.category(char)
    if category == "Cc":
        return char not in KEPT_CONTROLS
    if category in MARKED_CATEGORIES or char in INVISIBLE_OUTSIDE_CF:
        return True
    code = ord(char)
    return category == "Cn" and (_noncharacter(code) or _in(code, IGNORABLE_RESERVED_RANGES))


def character_label(char: str) -> str:
    """``U+202E RIGHT-TO-LEFT OVERRIDE``: the code point and its name (or alias, or kind)."""
    code = ord(char)
    if code < len(_C0_NAMES):
        name = _C0_NAMES[code]
    elif code == 0x7F:
        name = "DELETE"
    elif unicodedata.category(char) == "Cc":
        name = "CONTROL CHARACTER"
    elif _noncharacter(code):
        name = "NONCHARACTER"
    elif unicodedata.category(char) == "Cs":
        name = "SURROGATE"
    else:
        name = unicodedata.name(char, "UNASSIGNED CHARACTER")
    return f"{code_point(char)} {name}"


def code_point(char: str) -> str:
    return f"U+{ord(char):04X}"


def marker(char: str) -> str:
    """The plain-text marker that stands for ``char``: ``⟨U+202E⟩``."""
    return f"\u27e8{code_point(char)}\u27e9"


def _pieces(text: str) -> Iterator[tuple[str, bool]]:
    """The text as runs of ordinary text (False) and single marked characters (True)."""
    start = 0
    after_base = False  # the previous character is an ordinary one a selector may follow
    for position, char in enumerate(text):
        if _variation_selector(char):
            marked = not after_base
            after_base = False
        else:
            marked = is_deceptive(char)
            after_base = not marked and char not in KEPT_CONTROLS
        if marked:
            if position > start:
                yield text[start:position], False
            yield char, True
            start = position + 1
    if start < len(text):
        yield text[start:], False


def _text_of(value: object) -> str:
    """The text of a value. Markup (Jinja's ``join`` of escaped items, say) is read with its
    entities decoded and is escaped again: any tag in it is shown as text, never trusted."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value.unescape()
    return str(value)


def visible_text(value: object) -> str:
    """The text with every deceptive character replaced by its plain marker (``⟨U+202E⟩``): for
    plain-text outputs, HTML attributes and ``<option>`` labels (which are escaped as usual)."""
    text = _text_of(value)
    return "".join(marker(piece) if marked else piece for piece, marked in _pieces(text))


def visible_html(value: object) -> Markup:
    """The text escaped for HTML, with every deceptive character replaced by a visible, named
    marker element. The marker carries ``dir="ltr"``, which isolates it (HTML gives any element
    with ``dir`` ``unicode-bidi: isolate``), so that its brackets and digits read the same in a
    right-to-left paragraph."""
    # Markup.join and Markup.format escape every piece of text they are given.
    return Markup("").join(
        _MARKER_ELEMENT.format(label=character_label(piece), marker=marker(piece)) if marked else piece
        for piece, marked in _pieces(_text_of(value))
    )
