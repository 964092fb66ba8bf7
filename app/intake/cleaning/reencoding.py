"""Copying a picture's pixels, and nothing else, into a brand-new file ("Contract" in the package
docstring)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Final, cast

from PIL import Image, ImageOps

from app.intake.cleaning.errors import ImageTooLarge, UnreadableImage
from app.intake.cleaning.file_structure import container_within_limits
from app.intake.cleaning.formats import (
    DECODE_ERRORS,
    HARD_PIXEL_CEILING,
    JPEG,
    OUTPUT_TYPE,
    PNG,
    SNIFF_BYTES,
    WEBP,
    mode_to_encode,
    open_header,
    sniff_image,
)
from app.intake.cleaning.memory_budget import ImageMemoryReservation
from app.intake.cleaning.memory_price import parsing_bytes, pixel_bytes

JPEG_QUALITY: Final = 90
WEBP_QUALITY: Final = 90
# Encoder effort, not quality: see "CPU" in the package docstring.
PNG_COMPRESS_LEVEL: Final = 1
WEBP_METHOD: Final = 2
# The Pillow encoder of each output type.
_PILLOW_ENCODER: Final = {JPEG: "JPEG", PNG: "PNG", WEBP: "WEBP"}


class MetadataOutcome(StrEnum):
    REMOVED = "removed"  # re-encoded from pixels; nothing but pixels (and a palette) kept
    NOT_REMOVED = "not_removed"  # a format we cannot clean: stored as sent, staff are warned


@dataclass(frozen=True, slots=True)
class CleanedImage:
    data: bytes
    content_type: str  # of the re-encoded output


@dataclass(frozen=True, slots=True)
class _Pixels:
    """Everything of a submitted image that survives cleaning; nothing else crosses."""

    image: Image.Image  # brand new: pixels and palette only, its .info empty
    transparency: int | bytes | tuple[int, int, int] | None


def clean_image(data: bytes, *, max_pixels: int, memory: ImageMemoryReservation) -> CleanedImage:
    """`clean_image_into`, collected in memory. The re-encoded file is held as well, beyond the
    reservation: for tests and tools; the service streams (`clean_image_into`)."""
    out = io.BytesIO()
    content_type = clean_image_into(data, out.write, max_pixels=max_pixels, memory=memory)
    return CleanedImage(data=out.getvalue(), content_type=content_type)


def clean_image_into(
    data: bytes, write: Callable[[bytes], object], *, max_pixels: int, memory: ImageMemoryReservation
) -> str:
    """Decode, re-encode from pixels, and pass the new file to `write` in pieces; returns its type.

    Raises ImageTooLarge when width*height > max_pixels (checked from the header
    BEFORE decoding: decompression-bomb defence), ImageExceedsMemoryBudget or
    ImageCleaningBusy when `memory` cannot grow to `cleaning_memory_bytes` (also
    before decoding), and UnreadableImage when Pillow cannot decode it
    (truncated, corrupt, not really an image). `max_pixels` above
    HARD_PIXEL_CEILING is a programming error (ValueError).

    `memory` is grown for the duration and shrunk back to what it held on entry,
    however this ends; what it held on entry is taken to be `data` (the caller
    reserved it while it arrived), and counted as at least len(data). Whatever
    `write` raises ends the cleaning and propagates.
    """
    if not 0 < max_pixels <= HARD_PIXEL_CEILING:
        raise ValueError(f"max_pixels must be between 1 and {HARD_PIXEL_CEILING}")
    source_type = sniff_image(data[:SNIFF_BYTES])
    if source_type is None:
        raise UnreadableImage
    output_type = OUTPUT_TYPE[source_type]
    held_on_entry = memory.held_bytes
    try:
        pixels = _read_first_frame(
            data, source_type, output_type, max_pixels, memory, file_bytes=max(held_on_entry, len(data))
        )
        _encode(pixels, output_type, write)
    finally:
        memory.shrink_to(held_on_entry)
    return output_type


def _read_first_frame(
    data: bytes,
    source_type: str,
    output_type: str,
    max_pixels: int,
    memory: ImageMemoryReservation,
    *,
    file_bytes: int,
) -> _Pixels:
    container = container_within_limits(data, source_type)
    # What the parser keeps of the file is held before the header says anything more.
    parsed = file_bytes + parsing_bytes(source_type, file_bytes, container)
    memory.grow_to(parsed)
    with open_header(data, source_type) as opened:
        width, height = opened.size
        if width <= 0 or height <= 0:
            raise UnreadableImage
        # Only the header has been read so far: refusing here is what keeps a
        # small file from making us allocate gigabytes.
        if width * height > max_pixels:
            raise ImageTooLarge
        header_mode, encodable_mode = opened.mode, mode_to_encode(opened, output_type)
        memory.grow_to(
            parsed + pixel_bytes(source_type, width, height, header_mode, encodable_mode, container)
        )
        try:
            opened.load()  # the first frame only; later frames are never decoded
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge from exc
        except (*DECODE_ERRORS, Warning) as exc:
            raise UnreadableImage from exc
        if (opened.mode, opened.size, mode_to_encode(opened, output_type)) != (
            header_mode,
            (width, height),
            encodable_mode,
        ):
            # The reservation was made for what the header said; no plugin we use changes its
            # mind for the first frame, and a file that makes one do so is not taken further.
            raise UnreadableImage

        # A malformed EXIF block must not cost the submitter their picture: it
        # is about to be discarded anyway, so at worst the photo keeps the
        # orientation it was stored in.
        with contextlib.suppress(*DECODE_ERRORS, Warning):
            ImageOps.exif_transpose(opened, in_place=True)

        encodable = _in_encodable_mode(opened, output_type)
        if encodable is not opened:
            opened.close()  # free the decoded original before the fresh copy: two images, never three
        try:
            return _Pixels(image=_pixels_only(encodable), transparency=_transparency_key(encodable))
        finally:
            encodable.close()  # free the decoded image before encoding


def _in_encodable_mode(decoded: Image.Image, output_type: str) -> Image.Image:
    target = mode_to_encode(decoded, output_type)
    return decoded if target == decoded.mode else decoded.convert(target)


def _pixels_only(decoded: Image.Image) -> Image.Image:
    """A brand-new image holding the decoded pixels (and palette) and nothing else.

    Pasting between images of the same mode copies the raw pixel values (palette
    indices included); the new image's .info starts empty, so no encoder can
    pick up the submitted file's EXIF, ICC profile or comment (Pillow's JPEG
    encoder, for one, falls back to the image's own "comment").
    """
    fresh = Image.new(decoded.mode, decoded.size)
    fresh.paste(decoded, (0, 0))
    if decoded.mode == "P":
        palette = decoded.getpalette("RGB")
        if palette is not None:
            fresh.putpalette(palette, "RGB")
    return fresh


def _transparency_key(decoded: Image.Image) -> int | bytes | tuple[int, int, int] | None:
    """The transparency key of a mode without an alpha band, if well formed.

    Kept because without it transparent areas turn opaque (a palette GIF or PNG
    would gain a background); it holds colour values only. A malformed value is
    dropped rather than handed to the encoder.
    """
    value = decoded.info.get("transparency")
    if decoded.mode == "P":
        if isinstance(value, int) and 0 <= value <= 255:
            return value
        if isinstance(value, bytes) and len(value) <= 256:
            return value
    elif decoded.mode in ("1", "L", "I", "I;16"):
        if isinstance(value, int) and 0 <= value <= 0xFFFF:
            return value
    elif (
        decoded.mode == "RGB"
        and isinstance(value, tuple)
        and len(value) == 3
        and all(isinstance(channel, int) and 0 <= channel <= 0xFFFF for channel in value)
    ):
        return (value[0], value[1], value[2])
    return None


class _WriteOnlyFile:
    """What Pillow's encoders write to: `write` alone (no seek, no read, no file name), so the new
    file goes out in the pieces Pillow makes of it and is never held whole here."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self.write = write


def _encode(pixels: _Pixels, output_type: str, write: Callable[[bytes], object]) -> None:
    # Only encoding parameters, never metadata ones (exif, icc_profile, xmp, pnginfo, comment).
    params: dict[str, int | bytes | tuple[int, int, int]] = {}
    if pixels.transparency is not None and output_type == PNG:
        params["transparency"] = pixels.transparency
    if output_type == JPEG:
        params["quality"] = JPEG_QUALITY
    elif output_type == WEBP:
        params["quality"] = WEBP_QUALITY
        params["method"] = WEBP_METHOD
    else:
        params["compress_level"] = PNG_COMPRESS_LEVEL
    with pixels.image:
        pixels.image.save(
            cast(IO[bytes], _WriteOnlyFile(write)), format=_PILLOW_ENCODER[output_type], **params
        )
