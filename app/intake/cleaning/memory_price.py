"""The memory model ("Memory" in the package docstring): what cleaning an image holds at its
peak, priced from its header before any pixel is decoded. Every figure is bytes."""

from __future__ import annotations

from typing import Final

from PIL import Image, PngImagePlugin

from app.intake.cleaning.errors import UnreadableImage
from app.intake.cleaning.file_structure import Container, container_within_limits
from app.intake.cleaning.formats import (
    OUTPUT_TYPE,
    PNG,
    SNIFF_BYTES,
    WEBP,
    mode_to_encode,
    open_header,
    sniff_image,
)

# What Pillow allocates per pixel for an image of each mode: its storage, not the file's bit
# depth (tests/intake/test_cleaning.py checks these against Pillow's own allocator). A mode not
# listed is refused rather than guessed at.
_STORED_BYTES_PER_PIXEL: Final = {
    "1": 1,
    "L": 1,
    "P": 1,
    "I;16": 2,
    "I;16B": 2,
    "I;16L": 2,
    "I;16N": 2,
    "LA": 4,
    "La": 4,
    "PA": 4,
    "RGB": 4,
    "RGBA": 4,
    "RGBa": 4,
    "RGBX": 4,
    "CMYK": 4,
    "YCbCr": 4,
    "LAB": 4,
    "HSV": 4,
    "I": 4,
    "F": 4,
}
# Pillow keeps a pointer per row: a one-pixel-wide column of 50 million rows costs 400 MB of
# pointers for 50 MB of pixels, so the pixel count alone does not bound it.
_ROW_POINTER_BYTES: Final = 8
# Decoders and encoders keep a few whole rows (PNG's unfiltering, two rows of up to 8 bytes per
# pixel, and its filter trials, six of 4; libjpeg's row groups, at most 65535 pixels wide): per
# column of width, so an image one pixel tall and tens of millions wide is bounded too.
_ROW_BUFFER_BYTES_PER_COLUMN: Final = 64
# Codec state that does not grow with the image: zlib windows, libjpeg tables, a PNG iCCP
# profile (Pillow decompresses at most 1 MiB of it).
_FIXED_CODEC_BYTES: Final = 8 * 1024 * 1024
# Pillow's parsers keep what they read of the file (JPEG APP segments, and their ICC pieces
# joined; PNG and GIF chunks; libwebp copies the whole file), before and while decoding.
_PARSED_COPIES_OF_FILE: Final = 2
# Pillow's parsers walk the file's structure one piece at a time, keeping objects for many: a
# 4 MB JPEG of a million empty APP segments took 134 MB in Image.open (`file_structure` counts
# the pieces first and refuses files of too many).
_PARSER_BYTES_PER_STEP: Final = 160  # that JPEG's cost per piece, the costliest
# PNG text chunks are decompressed while reading (and dropped by us after), up to Pillow's cap.
_PNG_TEXT_BYTES: Final = PngImagePlugin.MAX_TEXT_MEMORY
# libjpeg holds every DCT coefficient of a progressive or multi-scan file: 2 bytes per sample,
# each component padded to whole MCUs (at most 4 blocks of 8 pixels). A sequential frame whose
# first scan carries every component (what cameras write) is decoded a row group at a time.
_JPEG_COEFFICIENT_BYTES: Final = 2
_JPEG_PADDING: Final = 32
# libwebp's animation decoder (Pillow's only WebP decoder) keeps two RGBA canvases while the
# image is open and hands the frame over as a third RGBA buffer.
_WEBP_DECODER_RGBA_BUFFERS: Final = 3
# libwebp's encoder at WEBP_METHOD, beyond the image it encodes, measured on noise (its worst
# case): 12 bytes per pixel for RGB, 40 for RGBA (the alpha plane is coded losslessly).
_WEBP_ENCODER_BYTES_PER_PIXEL: Final = {"RGB": 16, "RGBA": 48}


def cleaning_memory_bytes(data: bytes) -> int:
    """What cleaning `data` holds at its peak, file included, from its header alone (no pixel is
    decoded); what `clean_image_into` reserves. Raises UnreadableImage when the header cannot be
    read, names a mode whose cost is unknown, or the file is made of too many pieces."""
    source_type = sniff_image(data[:SNIFF_BYTES])
    if source_type is None:
        raise UnreadableImage
    container = container_within_limits(data, source_type)
    with open_header(data, source_type) as opened:
        width, height = opened.size
        return (
            len(data)
            + parsing_bytes(source_type, len(data), container)
            + pixel_bytes(
                source_type,
                width,
                height,
                opened.mode,
                mode_to_encode(opened, OUTPUT_TYPE[source_type]),
                container,
            )
        )


def parsing_bytes(source_type: str, file_bytes: int, container: Container) -> int:
    text = _PNG_TEXT_BYTES if source_type == PNG else 0
    return (
        _PARSED_COPIES_OF_FILE * file_bytes
        + container.parser_steps * _PARSER_BYTES_PER_STEP
        + text
        + _FIXED_CODEC_BYTES
    )


def _image_bytes(width: int, height: int, mode: str) -> int:
    """What Pillow allocates for one image of this size and mode."""
    bytes_per_pixel = _STORED_BYTES_PER_PIXEL.get(mode)
    if bytes_per_pixel is None:
        raise UnreadableImage  # fail closed: an allocation we cannot bound is not made
    return height * (width * bytes_per_pixel + _ROW_POINTER_BYTES)


def pixel_bytes(
    source_type: str, width: int, height: int, mode: str, encodable_mode: str, container: Container
) -> int:
    decoded = _image_bytes(width, height, mode)
    encodable = _image_bytes(width, height, encodable_mode)
    # Two full images at once: the decoded one and its transposed, converted or fresh copy.
    peak = 2 * max(decoded, encodable)
    if container.jpeg_buffers_every_coefficient:
        padded_samples = (
            -(-width // _JPEG_PADDING)
            * _JPEG_PADDING
            * -(-height // _JPEG_PADDING)
            * _JPEG_PADDING
            * Image.getmodebands(mode)
        )
        peak = max(peak, decoded + padded_samples * _JPEG_COEFFICIENT_BYTES)
    elif source_type == WEBP:
        rgba_buffers = _WEBP_DECODER_RGBA_BUFFERS * width * height * 4
        encoder = width * height * _WEBP_ENCODER_BYTES_PER_PIXEL[encodable_mode]
        peak = max(rgba_buffers + decoded + encodable, encodable + encoder)
    return peak + width * _ROW_BUFFER_BYTES_PER_COLUMN
