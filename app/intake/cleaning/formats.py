"""The formats cleaning accepts, how they are recognised, and the one way submitter bytes reach
Pillow: the decoder of the sniffed format alone, under a pixel ceiling ("Decompression bombs" in
the package docstring)."""

from __future__ import annotations

import io
import struct
import warnings
from typing import Final

from PIL import Image

from app.intake.cleaning.errors import ImageTooLarge, UnreadableImage

# 64 Mi pixels (256 MiB as RGBA): above the 48-megapixel sensors of current
# phones, below Pillow's default of ~89.5 M. Set once at import as Pillow's own
# limit, which only tightens it for anything else in the process that decodes
# images. Callers may not ask for more (`clean_image` refuses a larger
# `max_pixels`), so Pillow never refuses what a caller allowed.
HARD_PIXEL_CEILING: Final = 64 * 1024 * 1024
Image.MAX_IMAGE_PIXELS = HARD_PIXEL_CEILING
# Pillow's warnings about a submitter's file (a claimed canvas, damaged EXIF) become errors, so the
# file is refused as the tests see it refused, and nothing is printed to a log at upload time (a
# log line is a timestamp of a submitter's action).
warnings.filterwarnings("error", module=r"PIL(\..*)?$")

SNIFF_BYTES = 16

JPEG: Final = "image/jpeg"
PNG: Final = "image/png"
GIF: Final = "image/gif"
WEBP: Final = "image/webp"

# The one Pillow decoder each sniffed type may reach, and what it is re-encoded as.
_PILLOW_DECODER: Final = {JPEG: "JPEG", PNG: "PNG", GIF: "GIF", WEBP: "WEBP"}
OUTPUT_TYPE: Final = {JPEG: JPEG, PNG: PNG, GIF: PNG, WEBP: WEBP}

# Modes each output format stores as they are; anything else is converted first.
_ENCODABLE_MODES: Final = {
    JPEG: frozenset({"L", "RGB", "CMYK"}),
    PNG: frozenset({"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}),
    WEBP: frozenset({"RGB", "RGBA"}),
}

# How Pillow's decoders fail on damaged or hostile input: plugins signal a
# malformed structure with SyntaxError/struct.error/IndexError/TypeError (what
# Image.open itself treats as "not this format"), truncation with OSError or
# EOFError, impossible values and oversized text chunks with ValueError. Named
# rather than `Exception`, so a MemoryError or a bug of ours is not passed off
# as the submitter's damaged file. Pillow also reports some damage as warnings
# ("Corrupt EXIF data"): they are exceptions only where warnings are errors (the
# test suite, `python -W error`), and are then handled like the errors they
# stand for; elsewhere they are printed and decoding goes on.
DECODE_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError)


def sniff_image(head: bytes) -> str | None:
    """The image type by magic bytes ("image/jpeg", "image/png", "image/gif", "image/webp"), or None.

    Never trusts the client's declared content type or file name: those are
    whatever the submitter's software (or an adversary) chose to say.
    """
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP" and head[12:16] in (b"VP8 ", b"VP8L", b"VP8X"):
        return WEBP
    return None


def open_header(data: bytes, source_type: str) -> Image.Image:
    """The image with only its header read (`Image.open` is lazy)."""
    try:
        return Image.open(io.BytesIO(data), formats=[_PILLOW_DECODER[source_type]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's backstop, inside Image.open: an error beyond twice its limit;
        # a warning between once and twice, which only surfaces here where
        # warnings are errors (the test suite). Elsewhere the warning is printed
        # and the caller's check against max_pixels refuses the image, since
        # max_pixels <= the limit.
        raise ImageTooLarge from exc
    except (*DECODE_ERRORS, Warning) as exc:
        raise UnreadableImage from exc


def mode_to_encode(image: Image.Image, output_type: str) -> str:
    """The mode `image` is encoded in: its own, or the one it is converted to before encoding.
    Read from the header alone, so the cost of a conversion is known before decoding."""
    mode = image.mode
    if mode in _ENCODABLE_MODES[output_type] and not (mode == "P" and _palette_mode(image) != "RGB"):
        return mode
    keeps_alpha = output_type != JPEG and image.has_transparency_data
    return "RGBA" if keeps_alpha else "RGB"


def _palette_mode(decoded: Image.Image) -> str | None:
    return decoded.palette.mode if decoded.palette is not None else None
