"""Text shown to staff cannot deceive: every invisible or direction-changing character is replaced
by a visible, named marker, never dropped and never left to act (app/web/visible_text.py)."""

from __future__ import annotations

import re
import unicodedata

import pytest
from markupsafe import Markup

from app.web.pages import _STAFF_ENVIRONMENT
from app.web.visible_text import character_label, is_deceptive, visible_html, visible_text

BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
INVISIBLE_FORMAT = "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e\U000e0001\U000e0041"
CONTROLS = "\x00\x01\x07\x08\x0b\x0c\x1b\x1f\x7f\x80\x85\x9f"
SEPARATORS = "\u2028\u2029"
OTHER_INVISIBLES = "\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0"
UNASSIGNED_IGNORABLE_OR_NONCHARACTER = "\u2065\ufdd0\ufffe\uffff\U0001fffe\U000e0000\U000e0fff"
EVERY_MARKED = (
    BIDI_CONTROLS
    + INVISIBLE_FORMAT
    + CONTROLS
    + SEPARATORS
    + OTHER_INVISIBLES
    + UNASSIGNED_IGNORABLE_OR_NONCHARACTER
)

ORDINARY = [
    "他们给我母亲打电话，说要我回国。",  # Simplified Chinese
    "他們在多倫多跟蹤我，拍了我的照片。",  # Traditional Chinese
    "ئۇلار ئانامغا تېلېفون قىلىپ، مېنى يۇرتقا قايتىشقا زورلىدى.",  # Uyghur, Arabic script
    "ཁོང་ཚོས་ངའི་ཨ་མར་ཁ་པར་བཏང་།",  # Tibetan, with its combining vowel signs and tsheg
    "Он звонил 3 раза; Zürich, São Paulo, İstanbul — ¿qué? «ok» 1½ €5 № 7",
    "Line one\nLine two\r\n\tindented\n\nnew paragraph",
    # One selector after its base (emoji forms, a keycap, an ideographic variant); a skin tone.
    "\u2764\ufe0f \U0001f44d\U0001f3fd \u260e\ufe0f 1\ufe0f\u20e3 \u845b\U000e0100",
    "Ø ß ﬁ ㈱ 〇 \u3000 full-width ｈｅｌｌｏ",
]


def markers_of(text: str) -> list[str]:
    return re.findall(r"⟨(U\+[0-9A-F]{4,6})⟩", text)


@pytest.mark.parametrize("char", list(EVERY_MARKED), ids=lambda char: f"U+{ord(char):04X}")
def test_each_deceptive_character_is_replaced_by_its_named_marker(char: str) -> None:
    assert is_deceptive(char)
    code = f"U+{ord(char):04X}"
    plain = visible_text(f"a{char}b")
    assert plain == f"a⟨{code}⟩b"
    html = visible_html(f"a{char}b")
    assert char not in html
    assert markers_of(html) == [code]
    assert f'<span class="hidden-char" dir="ltr" title="{code} ' in html


def test_the_categories_are_covered_whole() -> None:
    """Not only the listed examples: every format character, every control but the three kept,
    both separators, in the whole of Unicode."""
    for code in range(0x110000):
        char = chr(code)
        category = unicodedata.category(char)
        if category == "Cf" or category in ("Zl", "Zp") or (category == "Cc" and char not in "\n\r\t"):
            assert is_deceptive(char), f"U+{code:04X}"


def test_the_marker_is_named_after_the_character() -> None:
    assert character_label("\u202e") == "U+202E RIGHT-TO-LEFT OVERRIDE"
    assert character_label("\u200b") == "U+200B ZERO WIDTH SPACE"
    assert character_label("\x00") == "U+0000 NULL"
    assert character_label("\x1b") == "U+001B ESCAPE"
    assert character_label("\x7f") == "U+007F DELETE"
    assert character_label("\x85") == "U+0085 CONTROL CHARACTER"
    assert character_label("\U000e0041") == "U+E0041 TAG LATIN CAPITAL LETTER A"
    assert character_label("\ufffe") == "U+FFFE NONCHARACTER"
    assert 'title="U+202E RIGHT-TO-LEFT OVERRIDE">⟨U+202E⟩</span>' in visible_html("\u202e")


def test_a_reversed_phone_number_reads_as_sent_with_the_override_shown() -> None:
    html = visible_html("Call +1 555 \u202e0123\u202c now")
    assert "+1 555 " in html
    assert "0123" in html
    assert "\u202e" not in html
    assert "\u202c" not in html
    assert markers_of(html) == ["U+202E", "U+202C"]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_text_in_any_script_is_unchanged(text: str) -> None:
    assert visible_text(text) == text
    assert str(visible_html(text)) == str(Markup.escape(text))
    assert "hidden-char" not in visible_html(text)


def test_newlines_and_tabs_are_kept_as_they_are() -> None:
    text = "first\nsecond\r\nthird\tcolumn"
    assert visible_text(text) == text
    assert visible_html(text) == text


def test_everything_else_is_escaped_and_nothing_is_trusted() -> None:
    html = visible_html("<script>alert(\"x\")</script> & 'quoted' \u202e<b>")
    assert "<script>" not in html
    assert "<b>" not in html
    assert html.startswith("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &#39;quoted&#39; ")
    assert html.endswith("⟨U+202E⟩</span>&lt;b&gt;")
    # Markup passed in is read as the text it holds: its tags are shown, not obeyed.
    assert visible_html(Markup("<i>x</i>&amp;")) == "&lt;i&gt;x&lt;/i&gt;&amp;"
    assert visible_html(None) == ""
    assert visible_text(None) == ""
    assert isinstance(visible_html("x"), Markup)


def test_a_variation_selector_is_kept_after_its_base_only() -> None:
    assert visible_text("❤\ufe0f") == "❤\ufe0f"
    assert visible_text("葛\U000e0100") == "葛\U000e0100"
    # At the start, after a line break or after another selector: nothing a reader sees, and a
    # run of them can carry hidden data.
    assert visible_text("\ufe0fx") == "⟨U+FE0F⟩x"
    assert visible_text("a\n\ufe0f") == "a\n⟨U+FE0F⟩"
    assert visible_text("a\ufe0f\ufe0e\U000e0101") == "a\ufe0f⟨U+FE0E⟩⟨U+E0101⟩"
    assert visible_text("a\u200b\ufe0f") == "a⟨U+200B⟩⟨U+FE0F⟩"


def test_joiners_are_marked_even_in_emoji_and_persian() -> None:
    """The documented choice: a security tool marks ZWJ and ZWNJ too, legible and honest."""
    assert visible_text("👩\u200d👧") == "👩⟨U+200D⟩👧"
    assert visible_text("می\u200cخواهم") == "می⟨U+200C⟩خواهم"


def test_the_staff_templates_have_both_filters() -> None:
    rendered = _STAFF_ENVIRONMENT.from_string(
        '<p title="{{ text | visible_plain }}">{{ text | visible }}</p>'
        '{{ items | map("visible") | join(", ") }}'
    ).render(text="a\u202eb<", items=["x\u200by", "<z>"])
    assert "\u202e" not in rendered
    assert "\u200b" not in rendered
    assert 'title="a⟨U+202E⟩b&lt;"' in rendered
    assert '<p title="a⟨U+202E⟩b&lt;">a<span class="hidden-char"' in rendered
    assert rendered.endswith("⟨U+200B⟩</span>y, &lt;z&gt;")
