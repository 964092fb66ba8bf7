"""Removing identifying metadata from submitted images, before they are sealed and stored.

Threat: a photo can locate or identify the person who sent it. EXIF carries GPS
coordinates, capture times, camera make, model and serial numbers, and vendor
MakerNotes; XMP and IPTC carry editing history, owner names and device ids; an ICC
profile can name the device or a calibrated monitor; PNG text and eXIf chunks,
JPEG and GIF comments carry whatever the producing software wrote; data appended
after the image (gain maps, whole other files) can carry anything. The adversary
is a state whose police the submitter is reporting, and who may see an image
again (a leak, a seized device, a published case file).

Contract: `clean_image` decodes the first frame, copies *only* its pixels into a
brand-new image (plus a palette, and a transparency key where the pixels would
be wrong without it) and encodes that. Nothing
else from the submitted file crosses over, so no list of known metadata fields
has to be complete: what is not pixels is dropped. Before dropping EXIF its
orientation is applied to the pixels, so a photo does not show up rotated.

Formats the service can clean are those `sniff_image` recognises by magic bytes;
anything else is stored as sent, with `MetadataOutcome.NOT_REMOVED` recorded so
that staff are warned (the caller's choice, not this module's).

Decisions (and what they cost):
- JPEG stays JPEG (quality 90), WebP stays WebP (lossy, quality 90), PNG stays
  PNG (lossless). JPEG and WebP lose a generation of quality: the price of
  re-encoding from pixels, which is the only way to be sure.
- GIF becomes PNG of the first frame: animation is lost. Only the first frame
  of any multi-frame file (animated GIF, APNG, animated WebP, MPO) is read.
- ICC profiles are dropped, not applied: wide-gamut photos (e.g. Display P3)
  look slightly duller. Converting colours would mean feeding the submitted
  profile to LittleCMS, more parser surface for an adversary who can submit
  crafted files.

Decompression bombs: a few kilobytes can declare gigapixels. The size is read
from the header (`Image.open` is lazy) and refused before anything is decoded,
against the caller's `max_pixels` and, as a backstop for every Pillow user in
the process, `HARD_PIXEL_CEILING`. Only the decoder of the sniffed format is
ever offered submitter bytes (`Image.open(formats=[...])`), never Pillow's other
plugins.

Memory: the whole encoded file is in memory (the decoders need random access to
it), bounded by the caller's file-size limit. Decoded pixels take up to
``max_pixels * 4`` bytes, held twice for a moment (the decoded image and the new
one; pixels are pasted from one to the other, not copied out through a bytes
object, which would make it three times), bounded by ``max_pixels``.
"""

from __future__ import annotations

import contextlib
import io
import struct
import warnings
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from PIL import Image, ImageOps

from app.errors import N_, InvalidInput, PayloadTooLarge

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

JPEG_QUALITY: Final = 90
WEBP_QUALITY: Final = 90

# The one Pillow decoder each sniffed type may reach, and what it is re-encoded as.
_PILLOW_DECODER: Final = {JPEG: "JPEG", PNG: "PNG", GIF: "GIF", WEBP: "WEBP"}
_OUTPUT_TYPE: Final = {JPEG: JPEG, PNG: PNG, GIF: PNG, WEBP: WEBP}
_PILLOW_ENCODER: Final = {JPEG: "JPEG", PNG: "PNG", WEBP: "WEBP"}

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
_DECODE_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, TypeError)


class MetadataOutcome(StrEnum):
    REMOVED = "removed"  # re-encoded from pixels; nothing but pixels (and a palette) kept
    NOT_REMOVED = "not_removed"  # a format we cannot clean: stored as sent, staff are warned


class ImageTooLarge(PayloadTooLarge):
    code = "image_too_large"
    public_message = N_("A picture has more pixels than this service accepts. Send a smaller version of it.")


class UnreadableImage(InvalidInput):
    code = "unreadable_image"
    public_message = N_(
        "A picture could not be read. It may be damaged; try sending it again or as a screenshot.")


@dataclass(frozen=True, slots=True)
class CleanedImage:
    data: bytes
    content_type: str  # of the re-encoded output


@dataclass(frozen=True, slots=True)
class _Pixels:
    """Everything of a submitted image that survives cleaning; nothing else crosses."""

    image: Image.Image  # brand new: pixels and palette only, its .info empty
    transparency: int | bytes | tuple[int, int, int] | None


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


def clean_image(data: bytes, *, max_pixels: int) -> CleanedImage:
    """Decode and re-encode from pixels.

    Raises ImageTooLarge when width*height > max_pixels (checked from the header
    BEFORE decoding: decompression-bomb defence) and UnreadableImage when Pillow
    cannot decode it (truncated, corrupt, not really an image). `max_pixels`
    above HARD_PIXEL_CEILING is a programming error (ValueError).
    """
    if not 0 < max_pixels <= HARD_PIXEL_CEILING:
        raise ValueError(f"max_pixels must be between 1 and {HARD_PIXEL_CEILING}")
    source_type = sniff_image(data[:SNIFF_BYTES])
    if source_type is None:
        raise UnreadableImage
    output_type = _OUTPUT_TYPE[source_type]
    pixels = _read_first_frame(data, source_type, output_type, max_pixels)
    return CleanedImage(data=_encode(pixels, output_type), content_type=output_type)


def _read_first_frame(data: bytes, source_type: str, output_type: str, max_pixels: int) -> _Pixels:
    try:
        opened = Image.open(io.BytesIO(data), formats=[_PILLOW_DECODER[source_type]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's backstop, inside Image.open: an error beyond twice its limit;
        # a warning between once and twice, which only surfaces here where
        # warnings are errors (the test suite). Elsewhere the warning is printed
        # and the check below refuses the image, since max_pixels <= the limit.
        raise ImageTooLarge from exc
    except (*_DECODE_ERRORS, Warning) as exc:
        raise UnreadableImage from exc

    with opened:
        width, height = opened.size
        if width <= 0 or height <= 0:
            raise UnreadableImage
        # Only the header has been read so far: refusing here is what keeps a
        # small file from making us allocate gigabytes.
        if width * height > max_pixels:
            raise ImageTooLarge
        try:
            opened.load()  # the first frame only; later frames are never decoded
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge from exc
        except (*_DECODE_ERRORS, Warning) as exc:
            raise UnreadableImage from exc

        # A malformed EXIF block must not cost the submitter their picture: it
        # is about to be discarded anyway, so at worst the photo keeps the
        # orientation it was stored in.
        with contextlib.suppress(*_DECODE_ERRORS, Warning):
            ImageOps.exif_transpose(opened, in_place=True)

        encodable = _in_encodable_mode(opened, output_type)
        if encodable is not opened:
            opened.close()  # free the decoded original before a second copy is made
        try:
            return _Pixels(image=_pixels_only(encodable), transparency=_transparency_key(encodable))
        finally:
            encodable.close()  # free the decoded image before encoding


def _in_encodable_mode(decoded: Image.Image, output_type: str) -> Image.Image:
    mode = decoded.mode
    if mode in _ENCODABLE_MODES[output_type] and not (mode == "P" and _palette_mode(decoded) != "RGB"):
        return decoded
    keeps_alpha = output_type != JPEG and decoded.has_transparency_data
    return decoded.convert("RGBA" if keeps_alpha else "RGB")


def _palette_mode(decoded: Image.Image) -> str | None:
    return decoded.palette.mode if decoded.palette is not None else None


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
    elif (decoded.mode == "RGB" and isinstance(value, tuple) and len(value) == 3
          and all(isinstance(channel, int) and 0 <= channel <= 0xFFFF for channel in value)):
        return (value[0], value[1], value[2])
    return None


def _encode(pixels: _Pixels, output_type: str) -> bytes:
    # Only encoding parameters, never metadata ones (exif, icc_profile, xmp, pnginfo, comment).
    params: dict[str, int | bytes | tuple[int, int, int]] = {}
    if pixels.transparency is not None and output_type == PNG:
        params["transparency"] = pixels.transparency
    if output_type == JPEG:
        params["quality"] = JPEG_QUALITY
    elif output_type == WEBP:
        params["quality"] = WEBP_QUALITY
    out = io.BytesIO()
    with pixels.image:
        pixels.image.save(out, format=_PILLOW_ENCODER[output_type], **params)
    return out.getvalue()
