"""Removing identifying metadata from submitted images, before they are sealed and stored.

Threat: a photo can locate or identify the person who sent it. EXIF carries GPS
coordinates, capture times, camera make, model and serial numbers, and vendor
MakerNotes; XMP and IPTC carry editing history, owner names and device ids; an ICC
profile can name the device or a calibrated monitor; PNG text and eXIf chunks,
JPEG and GIF comments carry whatever the producing software wrote; data appended
after the image (gain maps, whole other files) can carry anything. The adversary
is a state whose police the submitter is reporting, and who may see an image
again (a leak, a seized device, a published case file).

Contract: `clean_image_into` (and `clean_image`) decodes the first frame, copies
*only* its pixels into a brand-new image (plus a palette, and a transparency key where the pixels would
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

Memory: everything cleaning holds is reserved, before it is held, against the
process's `ImageMemoryBudget` (setting `image_memory_budget_bytes`, 512 MiB by
default; each worker process has its own). One image's reservation is the sum of:
- the encoded file, reserved by the caller as it streams in (at most
  `max_image_bytes`), plus a second copy while the chunks are joined;
- what Pillow's parsers keep of it: `_PARSED_COPIES_OF_FILE` copies (JPEG APP
  segments, PNG and GIF chunks, libwebp's own copy), `_PARSER_BYTES_PER_STEP`
  per piece of structure they walk, and for PNG the 64 MiB Pillow allows for
  decompressed text chunks (`PngImagePlugin.MAX_TEXT_MEMORY`). A file of more
  than `_MAX_PARSER_STEPS` pieces (segments, chunks, sub-blocks, stray bytes) is
  refused before Pillow sees it: its parsers walk them in Python, and a 4 MB
  JPEG of a million empty segments took 134 MB and 1.3 s inside `Image.open`;
- the pixels, computed from the header before any is decoded: for each whole
  image held at once, rows x (width x bytes per pixel of the mode Pillow decodes
  into + an 8-byte row pointer, so a one-pixel-wide column is not cheap). Pillow
  stores "1", "L" and "P" in 1 byte per pixel, "I;16" in 2, and "LA", "RGB",
  "RGBA", "CMYK" and the rest in 4. Two whole images are held at once: the
  decoded one and its transposed, converted or fresh copy (each step frees the
  one before it). A progressive or multi-scan JPEG adds libjpeg's coefficient
  buffer (2 bytes per sample; `_scan_jpeg` tells the kinds apart the way libjpeg
  does). WebP adds libwebp's two RGBA canvases and the RGBA frame it hands over,
  or, when encoding, up to `_WEBP_ENCODER_BYTES_PER_PIXEL` (the lossless coding
  of an alpha plane is the hungry part);
- codec rows (`_ROW_BUFFER_BYTES_PER_COLUMN` per column: a 4-million-pixel-wide
  PNG row is bounded too) and `_FIXED_CODEC_BYTES` of codec state.
`cleaning_memory_bytes` is that sum. The figures are Pillow's allocator (checked
in tests/intake/test_cleaning.py) and the peak RSS of processes cleaning photos,
noise and bulky metadata of each format, rounded up: the reservation came to 1.1
to 4.5 times the measured peak in every case (issue 13). The re-encoded file is
not held: it goes to the caller's `write` in the pieces the encoder makes.

16 bits per channel: Pillow decodes 16-bit colour PNGs to 8 bits per channel (it
keeps the high byte), so they cost what 8-bit ones do and are re-encoded as 8-bit,
which no screen shows the difference of; 16-bit grey stays 16-bit ("I;16").

At the default budget that admits, alone: baseline JPEGs up to `max_image_pixels`
(50 MP), progressive ones to about 47 MP, 8-bit RGB(A) PNGs to 45-55 MP
depending on the file's size (issue 13's 7000 x 7000 16-bit PNG is priced at
448 MiB), RGB WebP to about 25 MP and RGBA WebP to about 10 MP. An image whose
reservation alone exceeds the budget is refused (413, `ImageExceedsMemoryBudget`);
one that would fit but finds the budget used by others waits up to
`ImageMemoryBudget.wait_seconds`, then gets a 503 (`ImageCleaningBusy`). Either
way before its pixels are decoded.

CPU: decoding is linear in the raw data (inflating 392 MB of 16-bit samples takes
about a second), and re-encoding dominated: zlib's default level spent 3.5 s on a
noisy 12-megapixel PNG photo. PNG is now written at level 1 (`PNG_COMPRESS_LEVEL`:
3.5 times faster on photos, the same size for them; flat screenshots and drawings
come out 30 % to 4 times larger) and WebP at `method=2` (`WEBP_METHOD`, default 4:
half the CPU and encoder memory, the same size). What remains is Pillow trying
every PNG row filter and deflating what does not compress: about 0.16 s per
megapixel for RGBA noise, i.e. 8 s for the 49-megapixel file of issue 13 built to
decode to noise. The service refuses that one after 5 s, when its output passes
`max_file_bytes`; at most two images are cleaned at once per process, and others
wait for a slot no longer than `CLEANING_WAIT_SECONDS` (`app.intake.service`).
"""

from __future__ import annotations

import contextlib
import io
import re
import struct
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import IO, Final, Self, cast

from PIL import Image, ImageOps, PngImagePlugin

from app.kit.errors import N_, AppError, InvalidInput, PayloadTooLarge

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
# Encoder effort, not quality: see "CPU" above.
PNG_COMPRESS_LEVEL: Final = 1
WEBP_METHOD: Final = 2

# How long an image waits for others to give memory back (and, in app.intake.service, for a
# cleaning slot) before it is refused with 503: longer than cleaning the largest accepted photo
# takes, so a burst of ordinary submissions queues rather than fails; short enough that a
# thread and an upload slot are not held for long, and that a stream of costly pictures cannot
# build a queue that ordinary ones wait minutes in.
CLEANING_WAIT_SECONDS: Final = 10.0

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

# ---- the memory model ("Memory" above); every figure is bytes.

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
# They also walk the file's structure one piece at a time (a JPEG segment or stray byte, a PNG
# chunk, a GIF sub-block, a WebP chunk), mostly in Python, keeping objects for many: a 4 MB JPEG
# of a million empty APP segments took 134 MB and 1.3 s in Image.open, before any header check.
# `_container_within_limits` counts the pieces first, at C speed; past this many the file is
# refused (photos have dozens; a PNG written in 8 KB IDAT chunks has 4,096 at 32 MiB).
_MAX_PARSER_STEPS: Final = 100_000
_PARSER_BYTES_PER_STEP: Final = 160  # the JPEG case above, the costliest per piece
# PNG text chunks are decompressed while reading (and dropped by us after), up to Pillow's cap.
_PNG_TEXT_BYTES: Final = PngImagePlugin.MAX_TEXT_MEMORY
# libjpeg holds every DCT coefficient of a progressive or multi-scan file: 2 bytes per sample,
# each component padded to whole MCUs (at most 4 blocks of 8 pixels). A sequential frame whose
# first scan carries every component (what cameras write) is decoded a row group at a time.
_JPEG_COEFFICIENT_BYTES: Final = 2
_JPEG_PADDING: Final = 32
_JPEG_SEQUENTIAL_FRAMES: Final = frozenset({0xC0, 0xC1, 0xC9})  # baseline, extended, arithmetic
_JPEG_FRAMES: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn; not DHT, JPG, DAC
_JPEG_TABLES: Final = frozenset({0xC4, 0xCC, 0xDB, 0xDD, 0xFE, *range(0xE0, 0xF0)})  # and APPn, COM
_JPEG_WITHOUT_LENGTH: Final = frozenset({0xC8, *range(0xD0, 0xDA), *range(0xF0, 0xFE)})  # for Pillow
_GIF_BLOCK_START: Final = re.compile(rb"[!,;]")
# libwebp's animation decoder (Pillow's only WebP decoder) keeps two RGBA canvases while the
# image is open and hands the frame over as a third RGBA buffer.
_WEBP_DECODER_RGBA_BUFFERS: Final = 3
# libwebp's encoder at WEBP_METHOD, beyond the image it encodes, measured on noise (its worst
# case): 12 bytes per pixel for RGB, 40 for RGBA (the alpha plane is coded losslessly).
_WEBP_ENCODER_BYTES_PER_PIXEL: Final = {"RGB": 16, "RGBA": 48}


class MetadataOutcome(StrEnum):
    REMOVED = "removed"  # re-encoded from pixels; nothing but pixels (and a palette) kept
    NOT_REMOVED = "not_removed"  # a format we cannot clean: stored as sent, staff are warned


class ImageTooLarge(PayloadTooLarge):
    code = "image_too_large"
    public_message = N_("A picture has more pixels than this service accepts. Send a smaller version of it.")


class ImageExceedsMemoryBudget(ImageTooLarge):
    """Cleaning this picture alone would need more memory than the whole budget.

    Same code and words as ImageTooLarge: for the submitter the remedy is the same (a smaller
    picture), and a different wording would be one more string to translate.
    """


class ImageCleaningBusy(AppError):
    """Other pictures kept the memory budget (or the caller's cleaning slots) for longer than an
    image may wait: 503, try again shortly (the error handler adds Retry-After)."""

    status = 503
    code = "busy"
    public_message = N_("Too many reports are being sent right now. Please try again in a minute.")


class UnreadableImage(InvalidInput):
    code = "unreadable_image"
    public_message = N_(
        "A picture could not be read. It may be damaged; try sending it again or as a screenshot."
    )


@dataclass(frozen=True, slots=True)
class CleanedImage:
    data: bytes
    content_type: str  # of the re-encoded output


@dataclass(frozen=True, slots=True)
class _Pixels:
    """Everything of a submitted image that survives cleaning; nothing else crosses."""

    image: Image.Image  # brand new: pixels and palette only, its .info empty
    transparency: int | bytes | tuple[int, int, int] | None


@dataclass(frozen=True, slots=True)
class _Container:
    """What the file's structure says before Pillow reads it."""

    parser_steps: int
    jpeg_buffers_every_coefficient: bool = False


class ImageMemoryBudget:
    """A bound on the bytes image cleaning holds at once in one process.

    Threat: every photo is held whole and decoded whole, and a small file can claim a canvas
    worth gigabytes; the pixel and byte limits bound one image, not how many are in flight. Each
    image reserves what it will hold before holding it (`reservation()`); what does not fit waits
    a little for others to finish, then is refused, so the process's memory, not its luck,
    decides. Thread-safe: cleaning runs in worker threads.
    """

    def __init__(self, limit_bytes: int, *, wait_seconds: float = CLEANING_WAIT_SECONDS) -> None:
        if limit_bytes <= 0 or wait_seconds < 0:
            raise ValueError("an image memory budget needs a positive size and a wait of zero or more")
        self.limit_bytes = limit_bytes
        self.wait_seconds = wait_seconds
        self._in_use = 0
        self._given_back = threading.Condition()

    @property
    def in_use_bytes(self) -> int:
        with self._given_back:
            return self._in_use

    def reservation(self) -> ImageMemoryReservation:
        """What one image holds: starts empty, grows and shrinks with it, released at the end."""
        return ImageMemoryReservation(self)

    def _take(self, nbytes: int) -> None:
        with self._given_back:
            if not self._given_back.wait_for(
                lambda: self._in_use + nbytes <= self.limit_bytes, timeout=self.wait_seconds
            ):
                raise ImageCleaningBusy
            self._in_use += nbytes

    def _give_back(self, nbytes: int) -> None:
        with self._given_back:
            self._in_use -= nbytes
            self._given_back.notify_all()


class ImageMemoryReservation:
    """The part of an `ImageMemoryBudget` one image holds, used by one thread at a time (the
    budget is the shared part). Release it on every path: `release()` may be called any number
    of times, and leaving a `with` block releases it."""

    def __init__(self, budget: ImageMemoryBudget) -> None:
        self._budget = budget
        self._held = 0

    @property
    def held_bytes(self) -> int:
        return self._held

    def grow_to(self, total_bytes: int) -> None:
        """Hold `total_bytes` in all (nothing to do if already holding as much).

        Raises ImageExceedsMemoryBudget at once when one image would need more than the whole
        budget, and ImageCleaningBusy when the budget stays too full for `wait_seconds`; either way
        it holds what it held before.
        """
        if total_bytes > self._budget.limit_bytes:
            raise ImageExceedsMemoryBudget
        if total_bytes > self._held:
            self._budget._take(total_bytes - self._held)
            self._held = total_bytes

    def shrink_to(self, total_bytes: int) -> None:
        total_bytes = max(total_bytes, 0)
        if total_bytes < self._held:
            self._budget._give_back(self._held - total_bytes)
            self._held = total_bytes

    def release(self) -> None:
        self.shrink_to(0)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


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
    output_type = _OUTPUT_TYPE[source_type]
    held_on_entry = memory.held_bytes
    try:
        pixels = _read_first_frame(
            data, source_type, output_type, max_pixels, memory, file_bytes=max(held_on_entry, len(data))
        )
        _encode(pixels, output_type, write)
    finally:
        memory.shrink_to(held_on_entry)
    return output_type


def cleaning_memory_bytes(data: bytes) -> int:
    """What cleaning `data` holds at its peak, file included, from its header alone (no pixel is
    decoded); what `clean_image_into` reserves. Raises UnreadableImage when the header cannot be
    read, names a mode whose cost is unknown, or the file is made of too many pieces."""
    source_type = sniff_image(data[:SNIFF_BYTES])
    if source_type is None:
        raise UnreadableImage
    container = _container_within_limits(data, source_type)
    with _open_header(data, source_type) as opened:
        width, height = opened.size
        return (
            len(data)
            + _parsing_bytes(source_type, len(data), container)
            + _pixel_bytes(
                source_type,
                width,
                height,
                opened.mode,
                _encodable_mode(opened, _OUTPUT_TYPE[source_type]),
                container,
            )
        )


def _open_header(data: bytes, source_type: str) -> Image.Image:
    """The image with only its header read (`Image.open` is lazy)."""
    try:
        return Image.open(io.BytesIO(data), formats=[_PILLOW_DECODER[source_type]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's backstop, inside Image.open: an error beyond twice its limit;
        # a warning between once and twice, which only surfaces here where
        # warnings are errors (the test suite). Elsewhere the warning is printed
        # and the check below refuses the image, since max_pixels <= the limit.
        raise ImageTooLarge from exc
    except (*_DECODE_ERRORS, Warning) as exc:
        raise UnreadableImage from exc


def _parsing_bytes(source_type: str, file_bytes: int, container: _Container) -> int:
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


def _pixel_bytes(
    source_type: str, width: int, height: int, mode: str, encodable_mode: str, container: _Container
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


def _container_within_limits(data: bytes, source_type: str) -> _Container:
    scan = {JPEG: _scan_jpeg, PNG: _scan_png, GIF: _scan_gif, WEBP: _scan_webp}[source_type]
    container = scan(data)
    if container.parser_steps > _MAX_PARSER_STEPS:
        raise UnreadableImage  # built to keep a parser busy, not to be looked at
    return container


def _scan_jpeg(data: bytes) -> _Container:
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
            return _Container(steps, jpeg_buffers_every_coefficient=not one_pass)
        if code in _JPEG_FRAMES:
            sequential = code in _JPEG_SEQUENTIAL_FRAMES and components is None and length >= 8
            components = data[position + 9] if sequential and position + 10 <= len(data) else None
            orderly = orderly and components is not None
        elif code not in _JPEG_TABLES:
            orderly = False
        position += 2 + length
    return _Container(steps, jpeg_buffers_every_coefficient=True)


def _scan_png(data: bytes) -> _Container:
    """One step per chunk, to IEND: Pillow reads each in Python, IDAT included."""
    position, steps = 8, 0
    while steps <= _MAX_PARSER_STEPS and position + 12 <= len(data):
        steps += 1
        if data[position + 4 : position + 8] == b"IEND":
            break
        position += 12 + int.from_bytes(data[position : position + 4], "big")
    return _Container(steps)


def _scan_gif(data: bytes) -> _Container:
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
    return _Container(steps)


def _scan_webp(data: bytes) -> _Container:
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
    return _Container(steps)


def _read_first_frame(
    data: bytes,
    source_type: str,
    output_type: str,
    max_pixels: int,
    memory: ImageMemoryReservation,
    *,
    file_bytes: int,
) -> _Pixels:
    container = _container_within_limits(data, source_type)
    # What the parser keeps of the file is held before the header says anything more.
    parsed = file_bytes + _parsing_bytes(source_type, file_bytes, container)
    memory.grow_to(parsed)
    with _open_header(data, source_type) as opened:
        width, height = opened.size
        if width <= 0 or height <= 0:
            raise UnreadableImage
        # Only the header has been read so far: refusing here is what keeps a
        # small file from making us allocate gigabytes.
        if width * height > max_pixels:
            raise ImageTooLarge
        header_mode, encodable_mode = opened.mode, _encodable_mode(opened, output_type)
        memory.grow_to(
            parsed + _pixel_bytes(source_type, width, height, header_mode, encodable_mode, container)
        )
        try:
            opened.load()  # the first frame only; later frames are never decoded
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge from exc
        except (*_DECODE_ERRORS, Warning) as exc:
            raise UnreadableImage from exc
        if (opened.mode, opened.size, _encodable_mode(opened, output_type)) != (
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
        with contextlib.suppress(*_DECODE_ERRORS, Warning):
            ImageOps.exif_transpose(opened, in_place=True)

        encodable = _in_encodable_mode(opened, output_type)
        if encodable is not opened:
            opened.close()  # free the decoded original before the fresh copy: two images, never three
        try:
            return _Pixels(image=_pixels_only(encodable), transparency=_transparency_key(encodable))
        finally:
            encodable.close()  # free the decoded image before encoding


def _encodable_mode(image: Image.Image, output_type: str) -> str:
    """The mode `image` is encoded in: its own, or the one `_in_encodable_mode` converts to.
    Read from the header alone, so the cost of a conversion is known before decoding."""
    mode = image.mode
    if mode in _ENCODABLE_MODES[output_type] and not (mode == "P" and _palette_mode(image) != "RGB"):
        return mode
    keeps_alpha = output_type != JPEG and image.has_transparency_data
    return "RGBA" if keeps_alpha else "RGB"


def _in_encodable_mode(decoded: Image.Image, output_type: str) -> Image.Image:
    target = _encodable_mode(decoded, output_type)
    return decoded if target == decoded.mode else decoded.convert(target)


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
