"""The canonical context encoding is injective (app.crypto.binding)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from app.crypto.binding import BindingPart, bind

PROPERTY = settings(max_examples=100, deadline=None, database=None)

parts = st.one_of(
    st.text(max_size=8),
    st.binary(max_size=8),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
)
contexts = st.lists(parts, max_size=4).map(tuple)


def typed(context: tuple[BindingPart, ...]) -> tuple[tuple[type, BindingPart], ...]:
    return tuple((type(part), part) for part in context)


@PROPERTY
@given(first=contexts, second=contexts)
def test_bind_is_injective(first: tuple[BindingPart, ...], second: tuple[BindingPart, ...]) -> None:
    # Equal encodings only for the same parts, of the same types, in the same order.
    assert (bind(*first) == bind(*second)) == (typed(first) == typed(second))


@PROPERTY
@given(context=contexts)
def test_bind_is_a_concatenation_of_self_delimiting_parts(context: tuple[BindingPart, ...]) -> None:
    assert bind(*context) == b"".join(bind(part) for part in context)
    for part in context:
        encoded = bind(part)
        assert int.from_bytes(encoded[1:5], "big") == len(encoded) - 5


@PROPERTY
@given(text=st.text(max_size=8))
def test_str_and_its_utf8_bytes_differ(text: str) -> None:
    assert bind(text) != bind(text.encode("utf-8"))
    assert bind(text)[5:] == bind(text.encode("utf-8"))[5:]
