"""Counting the pieces of a file's structure before Pillow's parsers walk them ("Memory" in the
package docstring): what is built to keep a parser busy is refused at C speed, and a JPEG says
whether libjpeg will hold every coefficient."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from app.intake.cleaning.errors import UnreadableImage
from app.intake.cleaning.formats import GIF, JPEG, PNG, WEBP

# Pillow's parsers walk the file's structure one piece at a time (a JPEG segment or stray byte, a PNG
# chunk, a GIF sub-block, a WebP chunk), mostly in Python, keeping objects for many: a 4 MB JPEG
# of a million empty APP segments took 134 MB and 1.3 s in Image.open, before any header check.
# `container_within_limits` counts the pieces first, at C speed; past this many the file is
# refused (photos have dozens; a PNG written in 8 KB IDAT chunks has 4,096 at 32 MiB).
_MAX_PARSER_STEPS: Final = 100_000
# The JPEG markers `_scan_jpeg` tells apart, the way libjpeg does, to know whether every
# coefficient will be held (see `memory_price`).
_JPEG_SEQUENTIAL_FRAMES: Final = frozenset({0xC0, 0xC1, 0xC9})  # baseline, extended, arithmetic
_JPEG_FRAMES: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn; not DHT, JPG, DAC
_JPEG_TABLES: Final = frozenset({0xC4, 0xCC, 0xDB, 0xDD, 0xFE, *range(0xE0, 0xF0)})  # and APPn, COM
_JPEG_WITHOUT_LENGTH: Final = frozenset({0xC8, *range(0xD0, 0xDA), *range(0xF0, 0xFE)})  # for Pillow
_GIF_BLOCK_START: Final = re.compile(rb"[!,;]")


@dataclass(frozen=True, slots=True)
class Container:
    """What the file's structure says before Pillow reads it."""

    parser_steps: int
    jpeg_buffers_every_coefficient: bool = False


def container_within_limits(data: bytes, source_type: str) -> Container:
    scan = {JPEG: _scan_jpeg, PNG: _scan_png, GIF: _scan_gif, WEBP: _scan_webp}[source_type]
    container = scan(data)
    if container.parser_steps > _MAX_PARSER_STEPS:
        raise UnreadableImage  # built to keep a parser busy, not to be looked at
    return container


def _scan_jpeg(data: bytes) -> Container:
    """Walks the markers up to the first scan, as Pillow's header parser does (one step per
    segment, per stray byte, per fill byte), and says whether libjpeg will keep every coefficient.

    libjpeg decides that at the first SOS: unless the frame is sequential and that scan carries
    every component. A header with anything libjpeg does not expect before it (stray bytes,
    restart markers, a second frame) is taken to need the buffer: the costlier answer, so a
    file cannot be priced below what it costs.
    """
    position, steps, components, orderly = 2, 0, None, True
    while steps <= _MAX_PARSER_STEPS and position + 1 < len(data):
        steps += 1
        if data[position] != 0xFF:
            following = data.find(b"\xff", position)
            stray = (following if following >= 0 else len(data)) - position
            steps, position, orderly = steps + stray - 1, position + stray, False
            continue
        code = data[position + 1]
        if code == 0xFF:  # fill byte
            position += 1
            continue
        if code == 0x00 or code in _JPEG_WITHOUT_LENGTH:
            position, orderly = position + 2, False
            continue
        if code < 0xC0 or position + 4 > len(data):
            break  # Pillow refuses the file here
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if code == 0xDA:  # SOS: the first scan
            scan_components = data[position + 4] if position + 4 < len(data) else None
            one_pass = orderly and components is not None and scan_components == components
            return Container(steps, jpeg_buffers_every_coefficient=not one_pass)
        if code in _JPEG_FRAMES:
            sequential = code in _JPEG_SEQUENTIAL_FRAMES and components is None and length >= 8
            components = data[position + 9] if sequential and position + 10 <= len(data) else None
            orderly = orderly and components is not None
        elif code not in _JPEG_TABLES:
            orderly = False
        position += 2 + length
    return Container(steps, jpeg_buffers_every_coefficient=True)


def _scan_png(data: bytes) -> Container:
    """One step per chunk, to IEND: Pillow reads each in Python, IDAT included."""
    position, steps = 8, 0
    while steps <= _MAX_PARSER_STEPS and position + 12 <= len(data):
        steps += 1
        if data[position + 4 : position + 8] == b"IEND":
            break
        position += 12 + int.from_bytes(data[position : position + 4], "big")
    return Container(steps)


def _scan_gif(data: bytes) -> Container:
    """One step per extension sub-block and per stray byte up to the first image, as Pillow reads
    them (the image's own sub-blocks are read by the C decoder)."""
    flags = data[10] if len(data) > 10 else 0
    position, steps = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0), 0
    while steps <= _MAX_PARSER_STEPS and position < len(data):
        steps += 1
        introducer = data[position]
        if introducer in b",;":
            break
        if introducer != ord("!"):
            following = _GIF_BLOCK_START.search(data, position)
            stray = (following.start() if following else len(data)) - position
            steps, position = steps + stray - 1, position + stray
            continue
        position += 2  # "!" and the extension's label, then sub-blocks up to an empty one
        while steps <= _MAX_PARSER_STEPS and position < len(data):
            steps += 1
            size = data[position]
            position += 1 + size
            if size == 0:
                break
    return Container(steps)


def _scan_webp(data: bytes) -> Container:
    """One step per RIFF chunk, those inside animation frames included: libwebp's demuxer keeps
    a record of each (in C, so only their number matters)."""
    end = min(len(data), 8 + int.from_bytes(data[4:8], "little"))
    steps, chunks = 0, [(12, end)]
    while chunks and steps <= _MAX_PARSER_STEPS:
        position, stop = chunks.pop()
        while steps <= _MAX_PARSER_STEPS and position + 8 <= stop:
            steps += 1
            size = int.from_bytes(data[position + 4 : position + 8], "little")
            if data[position : position + 4] == b"ANMF":
                chunks.append((position + 8 + 16, min(stop, position + 8 + size)))
            position += 8 + size + (size & 1)
    return Container(steps)
