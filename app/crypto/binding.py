"""Canonical, injective encoding of a context into bytes.

Every AAD, HPKE ``info`` and HKDF ``info`` in Daylight is built here, so that
two different contexts can never encode to the same bytes (no ambiguity
between ``("ab", "c")`` and ``("a", "bc")``): each part carries a type tag and
a length prefix.
"""

from __future__ import annotations

import struct

BindingPart = str | bytes | int


def bind(*parts: BindingPart) -> bytes:
    encoded = bytearray()
    for part in parts:
        if isinstance(part, bool):  # bool is an int; refuse the ambiguity outright
            raise TypeError("bind() takes str, bytes or int, not bool")
        if isinstance(part, str):
            tag, raw = b"s", part.encode("utf-8")
        elif isinstance(part, bytes):
            tag, raw = b"b", part
        elif isinstance(part, int):
            tag, raw = b"i", part.to_bytes(8, "big", signed=True)
        else:
            raise TypeError(f"cannot bind {type(part).__name__}")
        encoded += tag + struct.pack(">I", len(raw)) + raw
    return bytes(encoded)
