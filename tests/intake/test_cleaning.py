"""Metadata removal from submitted images (app.intake.cleaning).

Every fixture is generated here with Pillow, and each test first checks that
its fixture really carries what the test claims to remove: a test whose input
had no GPS tag in the first place would pass for the wrong reason.
"""

from __future__ import annotations

import io
import random
import struct
import threading
import time
import uuid
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import (
    ExifTags,
    GifImagePlugin,
    Image,
    ImageChops,
    ImageCms,
    ImageFile,
    ImageStat,
    JpegImagePlugin,
    PngImagePlugin,
)

from app.crypto import envelope
from app.intake.attachments import AttachmentWriter
from app.intake.cleaning import (
    HARD_PIXEL_CEILING,
    SNIFF_BYTES,
    CleanedImage,
    ImageCleaningBusy,
    ImageExceedsMemoryBudget,
    ImageMemoryBudget,
    ImageTooLarge,
    MetadataOutcome,
    UnreadableImage,
    clean_image,
    clean_image_into,
    cleaning_memory_bytes,
    sniff_image,
)
from app.intake.models import ATTACHMENT_BLOB
from app.kit.config import Settings
from app.kit.errors import InvalidInput, PayloadTooLarge

MAX_PIXELS = 4_000_000
MAKE = "SpyCamCorp"
MODEL = "Model-X9"
SERIAL = "SN-4815162342"
MAKER_NOTE = b"MAKERNOTE-OWNER-ID-77"
TAKEN_AT = "2024:03:01 12:34:56"
COMMENT = b"sent from the flat on Rue Example"
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
    b'<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="SpyCamCorp Camera App"/>'
    b"</rdf:RDF></x:xmpmeta>"
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROPERTY = settings(max_examples=200, deadline=None, database=None)
# For the tests of what cleaning keeps and drops: a budget nothing here comes near.
ROOMY = ImageMemoryBudget(limit_bytes=64 * HARD_PIXEL_CEILING, wait_seconds=0)


# ---------------------------------------------------------------- fixtures


def clean(data: bytes, *, max_pixels: int) -> CleanedImage:
    with ROOMY.reservation() as memory:
        return clean_image(data, max_pixels=max_pixels, memory=memory)


def identifying_exif(*, orientation: int | None = None) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = MAKE
    exif[ExifTags.Base.Model] = MODEL
    exif[ExifTags.Base.DateTime] = TAKEN_AT
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    details = exif.get_ifd(ExifTags.IFD.Exif)
    details[ExifTags.Base.DateTimeOriginal] = TAKEN_AT
    details[ExifTags.Base.BodySerialNumber] = SERIAL
    details[ExifTags.Base.MakerNote] = MAKER_NOTE
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (55.0, 45.0, 21.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (37.0, 36.0, 56.0)
    return exif


def srgb_icc_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def gradient(mode: str, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A smooth picture (compresses well as JPEG, so pixel comparisons are meaningful)."""
    width, height = size
    image = Image.new("RGB", size)
    image.putdata([(x * 255 // width, y * 255 // height, 128) for y in range(height) for x in range(width)])
    return image.convert(mode)


def encode(image: Image.Image, image_format: str, **params: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format, **params)
    return out.getvalue()


def reopen(cleaned: CleanedImage) -> ImageFile.ImageFile:
    image = Image.open(io.BytesIO(cleaned.data))
    image.load()
    return image


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_chunk_types(data: bytes) -> list[bytes]:
    assert data.startswith(PNG_SIGNATURE)
    kinds, offset = [], len(PNG_SIGNATURE)
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kinds.append(data[offset + 4 : offset + 8])
        offset += 12 + length
    return kinds


def riff_chunk_types(data: bytes) -> list[bytes]:
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WEBP"
    kinds, offset = [], 12
    while offset < len(data):
        kind, length = data[offset : offset + 4], struct.unpack("<I", data[offset + 4 : offset + 8])[0]
        kinds.append(kind)
        offset += 8 + length + (length & 1)
    return kinds


def png_declaring_size(width: int, height: int, *, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    """A valid PNG header claiming width x height (8-bit RGB unless told), with a few bytes of
    pixel data: a tiny bomb."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    palette = png_chunk(b"PLTE", bytes(range(6))) if colour_type == 3 else b""
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + palette
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def png_16bit_rgba_bomb(width: int, height: int) -> bytes:
    """The file of issue 13's report: a 16-bit RGBA PNG of a few hundred kilobytes that decodes to
    gigabytes' worth of claims. One gradient row, then rows equal to the one above ("Up" filter,
    all zeros), which zlib squeezes about a thousand to one."""
    row_bytes = width * 8
    first_row = b"\x00" + (bytes(range(256)) * (row_bytes // 256 + 1))[:row_bytes]
    same_as_above = b"\x02" + bytes(row_bytes)
    compressor = zlib.compressobj(9)
    idat = [compressor.compress(first_row)]
    idat.extend(compressor.compress(same_as_above * 100) for _ in range((height - 1) // 100))
    idat += [compressor.compress(same_as_above * ((height - 1) % 100)), compressor.flush()]
    header = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(idat))
        + png_chunk(b"IEND", b"")
    )


def png_decoding_to_noise(width: int, height: int) -> bytes:
    """A small interlaced PNG whose pixels, put back in place, are noise: each Adam7 pass is one
    random row repeated, so the file compresses well and the re-encoded picture cannot."""
    randomness, compressor, idat = random.Random(5), zlib.compressobj(9), []
    for x0, y0, dx, dy in [
        (0, 0, 8, 8),
        (4, 0, 8, 8),
        (0, 4, 4, 8),
        (2, 0, 4, 4),
        (0, 2, 2, 4),
        (1, 0, 2, 2),
        (0, 1, 1, 2),
    ]:
        pass_width, pass_height = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        idat.append(compressor.compress(b"\x00" + randomness.randbytes(pass_width * 4)))
        idat.append(compressor.compress((b"\x02" + bytes(pass_width * 4)) * (pass_height - 1)))
    idat.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 1)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(idat))
        + png_chunk(b"IEND", b"")
    )


def pillow_bytes_per_pixel(mode: str) -> float:
    """What Pillow's own allocator takes per pixel for an image of this mode (blocks made small
    enough to count rows exactly)."""
    block_size = Image.core.get_block_size()
    Image.core.set_block_size(4096)
    try:
        before = Image.core.get_stats()["allocated_blocks"]
        with Image.new(mode, (1024, 64)):
            allocated = Image.core.get_stats()["allocated_blocks"] - before
    finally:
        Image.core.set_block_size(block_size)
    return allocated * 4096 / (1024 * 64)


def mean_difference(first: Image.Image, second: Image.Image) -> float:
    stat = ImageStat.Stat(ImageChops.difference(first.convert("RGB"), second.convert("RGB")))
    return sum(stat.mean) / len(stat.mean)


# Small images of each format that carry identifying metadata.
SEEDS = {
    "JPEG": encode(gradient("RGB", (24, 16)), "JPEG", exif=identifying_exif()),
    "PNG": encode(gradient("RGBA", (24, 16)), "PNG", exif=identifying_exif()),
    "GIF": encode(gradient("P", (24, 16)), "GIF", comment=MAKE.encode()),
    "WEBP": encode(gradient("RGBA", (24, 16)), "WEBP", exif=identifying_exif()),
}


@pytest.fixture
def decoding_forbidden(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Fails the test if any image is decoded (header reads are allowed)."""
    calls: list[str] = []

    def refuse_to_decode(self: ImageFile.ImageFile) -> None:
        calls.append(self.format or "?")
        pytest.fail("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse_to_decode)
    return calls


# ---------------------------------------------------------------- metadata removal


def test_jpeg_loses_exif_gps_icc_xmp_and_comment() -> None:
    original = gradient("RGB")
    submitted = encode(
        original,
        "JPEG",
        quality=95,
        exif=identifying_exif(),
        icc_profile=srgb_icc_profile(),
        xmp=XMP,
        comment=COMMENT,
    )
    with Image.open(io.BytesIO(submitted)) as fixture:  # the fixture carries everything we claim
        assert fixture.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
        assert {"icc_profile", "xmp", "exif", "comment"} <= fixture.info.keys()
    for needle in (b"Exif", MAKE.encode(), SERIAL.encode(), MAKER_NOTE, b"http://ns.adobe.com/xap", COMMENT):
        assert needle in submitted

    cleaned = clean(submitted, max_pixels=MAX_PIXELS)

    assert cleaned.content_type == "image/jpeg"
    image = reopen(cleaned)
    assert isinstance(image, JpegImagePlugin.JpegImageFile)
    assert len(image.getexif()) == 0
    assert not {"icc_profile", "xmp", "exif", "comment", "photoshop", "adobe"} & image.info.keys()
    assert not [marker for marker, _ in image.applist if marker != "APP0"]  # only the JFIF header
    for needle in (
        b"Exif",
        b"GPS",
        MAKE.encode(),
        MODEL.encode(),
        SERIAL.encode(),
        MAKER_NOTE,
        TAKEN_AT.encode(),
        b"http://ns.adobe.com/xap",
        COMMENT,
        b"ICC_PROFILE",
    ):
        assert needle not in cleaned.data
    assert image.size == original.size
    assert image.mode == "RGB"
    assert mean_difference(image, original) < 3


def test_exif_orientation_is_applied_to_the_pixels() -> None:
    # 40 wide, 20 tall: left half red, right half blue. Orientation 6 means
    # "rotate 90 degrees clockwise to display": the left edge ends up on top.
    original = Image.new("RGB", (40, 20), (255, 0, 0))
    original.paste((0, 0, 255), (20, 0, 40, 20))
    submitted = encode(original, "JPEG", quality=95, exif=identifying_exif(orientation=6))

    image = reopen(clean(submitted, max_pixels=MAX_PIXELS))

    assert image.size == (20, 40)
    assert len(image.getexif()) == 0
    red, _, blue = image.split()
    assert red.getpixel((10, 5)) > 200  # type: ignore[operator]
    assert blue.getpixel((10, 5)) < 60  # type: ignore[operator]
    assert blue.getpixel((10, 35)) > 200  # type: ignore[operator]
    assert red.getpixel((10, 35)) < 60  # type: ignore[operator]


def test_png_loses_text_exif_and_icc_chunks_and_keeps_alpha() -> None:
    original = gradient("RGBA")
    original.putpixel((3, 4), (10, 20, 30, 0))
    original.putpixel((5, 6), (10, 20, 30, 99))
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", MAKE)
    text.add_text("Location", "55.7558 N 37.6173 E", zip=True)
    text.add_itxt("Description", COMMENT.decode(), lang="en", tkey="Description")
    text.add_itxt("XML:com.adobe.xmp", XMP.decode())
    submitted = encode(original, "PNG", pnginfo=text, exif=identifying_exif(), icc_profile=srgb_icc_profile())
    assert {b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"} <= set(png_chunk_types(submitted))

    cleaned = clean(submitted, max_pixels=MAX_PIXELS)

    assert cleaned.content_type == "image/png"
    assert set(png_chunk_types(cleaned.data)) <= {b"IHDR", b"IDAT", b"IEND"}
    for needle in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP", MAKE.encode(), b"http://ns.adobe.com/xap"):
        assert needle not in cleaned.data
    image = reopen(cleaned)
    assert len(image.getexif()) == 0
    assert image.mode == "RGBA"
    assert image.tobytes() == original.tobytes()  # lossless, alpha included


def test_webp_loses_exif_and_xmp_and_keeps_alpha() -> None:
    original = gradient("RGBA")
    original.paste((0, 0, 0, 0), (0, 0, 16, 16))
    submitted = encode(
        original, "WEBP", quality=95, exif=identifying_exif(), xmp=XMP, icc_profile=srgb_icc_profile()
    )
    assert {b"EXIF", b"XMP ", b"ICCP"} <= set(riff_chunk_types(submitted))

    cleaned = clean(submitted, max_pixels=MAX_PIXELS)

    assert cleaned.content_type == "image/webp"
    assert not {b"EXIF", b"XMP ", b"ICCP"} & set(riff_chunk_types(cleaned.data))
    for needle in (b"GPS", MAKE.encode(), b"http://ns.adobe.com/xap"):
        assert needle not in cleaned.data
    image = reopen(cleaned)
    assert not {"exif", "xmp", "icc_profile"} & image.info.keys()
    assert image.mode == "RGBA"
    assert image.getchannel("A").getpixel((4, 4)) == 0
    assert image.getchannel("A").getpixel((40, 40)) == 255
    assert mean_difference(image, original) < 4


def test_gif_becomes_png_of_the_first_frame_without_its_comment() -> None:
    first = Image.new("P", (30, 20), 1)
    first.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
    second = Image.new("P", (30, 20), 2)
    second.putpalette([0, 0, 0, 255, 0, 0, 0, 0, 255])
    submitted = encode(
        first, "GIF", save_all=True, append_images=[second], comment=COMMENT, duration=100, loop=0
    )
    with Image.open(io.BytesIO(submitted)) as fixture:
        assert isinstance(fixture, GifImagePlugin.GifImageFile)
        assert fixture.n_frames == 2
        assert fixture.info["comment"] == COMMENT

    cleaned = clean(submitted, max_pixels=MAX_PIXELS)

    assert cleaned.content_type == "image/png"
    assert COMMENT not in cleaned.data
    assert set(png_chunk_types(cleaned.data)) <= {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}
    image = reopen(cleaned)
    assert image.format == "PNG"
    assert getattr(image, "n_frames", 1) == 1
    assert image.size == (30, 20)
    assert image.convert("RGB").getpixel((15, 10)) == (255, 0, 0)  # the first frame, not the second


def test_palette_png_keeps_palette_and_transparency() -> None:
    original = Image.new("P", (16, 16), 1)
    original.putpalette([0, 0, 0, 255, 255, 0, 0, 128, 255])
    original.paste(0, (0, 0, 8, 16))
    submitted = encode(original, "PNG", transparency=0)

    cleaned = clean(submitted, max_pixels=MAX_PIXELS)

    image = reopen(cleaned)
    assert image.mode == "P"
    assert image.tobytes() == original.tobytes()
    rgba = image.convert("RGBA")
    assert rgba.getpixel((2, 2)) == (0, 0, 0, 0)
    assert rgba.getpixel((12, 2)) == (255, 255, 0, 255)


def test_gif_transparency_survives_as_png_transparency() -> None:
    original = Image.new("P", (10, 10), 1)
    original.putpalette([0, 0, 0, 0, 200, 0])
    original.paste(0, (0, 0, 5, 10))
    submitted = encode(original, "GIF", transparency=0)

    rgba = reopen(clean(submitted, max_pixels=MAX_PIXELS)).convert("RGBA")

    assert rgba.getpixel((1, 1)) == (0, 0, 0, 0)
    assert rgba.getpixel((8, 1)) == (0, 200, 0, 255)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "I;16", "P", "RGB", "RGBA"])
def test_png_modes_round_trip_pixel_for_pixel(mode: str) -> None:
    original = gradient("RGB").convert(mode) if mode != "I;16" else gradient("L").convert("I;16")
    submitted = encode(original, "PNG")

    image = reopen(clean(submitted, max_pixels=MAX_PIXELS))

    assert image.mode == original.mode
    assert image.tobytes() == original.tobytes()
    if mode == "P":
        assert image.getpalette() == original.getpalette()


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_jpeg_keeps_its_colour_mode(mode: str) -> None:
    original = gradient(mode)
    submitted = encode(original, "JPEG", quality=95, exif=identifying_exif())

    image = reopen(clean(submitted, max_pixels=MAX_PIXELS))

    assert image.mode == mode
    assert len(image.getexif()) == 0
    assert mean_difference(image, original) < 3


# ---------------------------------------------------------------- decompression bombs


def test_image_at_the_limit_is_accepted_and_one_pixel_over_is_refused() -> None:
    submitted = encode(gradient("RGB", (10, 10)), "PNG")
    assert reopen(clean(submitted, max_pixels=100)).size == (10, 10)
    with pytest.raises(ImageTooLarge):
        clean(submitted, max_pixels=99)


def test_oversized_header_is_refused_before_any_decoding(decoding_forbidden: list[str]) -> None:
    bomb = png_declaring_size(8000, 8000)  # 64 M pixels in ~100 bytes; below Pillow's own limit
    assert len(bomb) < 200

    started = time.perf_counter()
    with pytest.raises(ImageTooLarge) as refused:
        clean(bomb, max_pixels=1_000_000)

    assert time.perf_counter() - started < 1
    assert decoding_forbidden == []
    assert refused.value.status == 413
    assert refused.value.code == "image_too_large"


def test_small_bomb_within_the_limit_would_have_been_decoded() -> None:
    # The control for the test above: with the limit raised, the same kind of
    # file reaches the decoder (and fails there, its pixel data being fake).
    with pytest.raises(UnreadableImage):
        clean(png_declaring_size(300, 300), max_pixels=1_000_000)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (9_000, 9_000),  # between Pillow's limit and twice it: a DecompressionBombWarning
        (20_000, 20_000),  # beyond twice Pillow's limit: a DecompressionBombError
    ],
)
def test_pillow_bomb_checks_become_image_too_large(width: int, height: int) -> None:
    assert width * height > HARD_PIXEL_CEILING
    with pytest.raises(ImageTooLarge):
        clean(png_declaring_size(width, height), max_pixels=HARD_PIXEL_CEILING)


def test_pillow_bomb_warning_outside_the_test_suite_still_ends_as_image_too_large(
    decoding_forbidden: list[str],
) -> None:
    # In production the warning is only printed, and Image.open goes on: our
    # own check must refuse the image then.
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageTooLarge):
        clean(png_declaring_size(9_000, 9_000), max_pixels=HARD_PIXEL_CEILING)
    assert decoding_forbidden == []


def test_own_check_holds_when_pillows_limit_is_disabled(
    monkeypatch: pytest.MonkeyPatch, decoding_forbidden: list[str]
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageTooLarge):
        clean(png_declaring_size(60_000, 60_000), max_pixels=HARD_PIXEL_CEILING)
    assert decoding_forbidden == []


def test_pillow_limit_is_the_documented_ceiling() -> None:
    assert Image.MAX_IMAGE_PIXELS == HARD_PIXEL_CEILING


@pytest.mark.parametrize("max_pixels", [0, -1, HARD_PIXEL_CEILING + 1])
def test_max_pixels_outside_the_ceiling_is_a_programming_error(max_pixels: int) -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        clean(encode(gradient("RGB", (4, 4)), "PNG"), max_pixels=max_pixels)


# ---------------------------------------------------------------- unreadable input


def test_truncated_jpeg_is_unreadable() -> None:
    submitted = encode(gradient("RGB", (200, 150)), "JPEG", quality=95)
    with pytest.raises(UnreadableImage) as refused:
        clean(submitted[: len(submitted) // 2], max_pixels=MAX_PIXELS)
    assert refused.value.status == 422
    assert refused.value.code == "unreadable_image"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"\xff\xd8\xff" + random.Random(7).randbytes(4096), id="jpeg-magic-then-noise"),
        pytest.param(b"", id="empty"),
        pytest.param(b"just some text, not a picture", id="text"),
        pytest.param(b"%PDF-1.7\n" + b"\x00" * 64, id="pdf"),
        pytest.param(PNG_SIGNATURE + b"\x00" * 32, id="png-magic-then-nothing"),
        pytest.param(b"GIF89a", id="gif-magic-only"),
    ],
)
def test_garbage_is_unreadable(data: bytes) -> None:
    with pytest.raises(UnreadableImage):
        clean(data, max_pixels=MAX_PIXELS)


def test_only_the_sniffed_formats_decoder_is_offered_the_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow would otherwise try every plugin it has (TGA, for one, has no
    # magic bytes and parses whatever it is given) on submitter bytes.
    offered: list[object] = []
    real_open = Image.open

    def recording_open(fp: Any, mode: Any = "r", formats: Any = None) -> ImageFile.ImageFile:
        offered.append(formats)
        return real_open(fp, mode, formats)

    monkeypatch.setattr(Image, "open", recording_open)
    for data in SEEDS.values():
        clean(data, max_pixels=MAX_PIXELS)

    assert offered == [["JPEG"], ["PNG"], ["GIF"], ["WEBP"]]


@PROPERTY
@given(data=st.data())
def test_damaged_images_are_cleaned_or_refused_never_crash(data: st.DataObject) -> None:
    image_format = data.draw(st.sampled_from(["JPEG", "PNG", "GIF", "WEBP"]), label="format")
    submitted = bytearray(SEEDS[image_format])
    for _ in range(data.draw(st.integers(min_value=1, max_value=8), label="flips")):
        position = data.draw(st.integers(min_value=0, max_value=len(submitted) - 1), label="position")
        submitted[position] = data.draw(st.integers(min_value=0, max_value=255), label="byte")
    cut = data.draw(st.integers(min_value=0, max_value=len(submitted)), label="cut")
    try:
        cleaned = clean(bytes(submitted[:cut]), max_pixels=100_000)
    except (UnreadableImage, ImageTooLarge):
        return
    assert MAKE.encode() not in cleaned.data
    assert len(reopen(cleaned).getexif()) == 0


# ---------------------------------------------------------------- memory: pricing from the header

MEBIBYTE = 1024 * 1024
DEFAULT_BUDGET = Settings.model_fields["image_memory_budget_bytes"].default


@pytest.mark.parametrize(
    ("bit_depth", "colour_type", "decoded_mode"),
    [
        (1, 0, "1"),
        (8, 3, "P"),
        (8, 0, "L"),
        (16, 0, "I;16"),  # 16-bit grey is kept at 16 bits: 2 bytes per pixel
        (8, 4, "LA"),
        (8, 2, "RGB"),
        (16, 2, "RGB"),  # 16-bit colour decodes to 8 bits per channel: priced as 8-bit
        (8, 6, "RGBA"),
        (16, 6, "RGBA"),
    ],
)
def test_memory_is_priced_from_the_header_by_what_pillow_stores_per_pixel(
    bit_depth: int, colour_type: int, decoded_mode: str, decoding_forbidden: list[str]
) -> None:
    width, height = 3000, 2000
    submitted = png_declaring_size(width, height, bit_depth=bit_depth, colour_type=colour_type)
    grey = png_declaring_size(width, height, bit_depth=8, colour_type=0)
    if colour_type == 3:  # the same file size and chunk count as the palette one's PLTE
        grey = grey[:33] + png_chunk(b"teSt", bytes(6)) + grey[33:]
    assert len(grey) == len(submitted)
    with Image.open(io.BytesIO(submitted)) as header:
        assert header.mode == decoded_mode  # the fixture declares what the test claims

    extra = cleaning_memory_bytes(submitted) - cleaning_memory_bytes(grey)

    # Two whole images are held at once; each costs what Pillow allocates for it.
    assert extra == 2 * width * height * (pillow_bytes_per_pixel(decoded_mode) - pillow_bytes_per_pixel("L"))
    assert decoding_forbidden == []


def test_price_counts_every_copy_of_the_pixels() -> None:
    width, height = 3000, 2000
    price = cleaning_memory_bytes(png_declaring_size(width, height)) - cleaning_memory_bytes(
        png_declaring_size(1, 1)
    )
    assert price >= 2 * width * height * 4  # the decoded RGB image and its fresh copy


@pytest.mark.parametrize(
    ("image_format", "mode", "params", "bytes_per_pixel_at_least"),
    [
        ("JPEG", "RGB", {}, 2 * 4),  # the decoded image and its fresh copy
        ("JPEG", "RGB", {"progressive": True}, 4 + 3 * 2),  # and libjpeg's coefficients, 2 bytes each
        ("JPEG", "CMYK", {"progressive": True}, 4 + 4 * 2),
        ("JPEG", "L", {}, 2 * 1),
        ("GIF", "P", {}, 2 * 1),
        ("WEBP", "RGB", {}, 3 * 4 + 2 * 4),  # libwebp's canvases and frame, the image and its copy
        ("WEBP", "RGBA", {}, 4 + 40),  # the fresh copy and the encoder's coding of the alpha plane
    ],
)
def test_each_format_is_priced_with_its_codecs_buffers(
    image_format: str, mode: str, params: dict[str, Any], bytes_per_pixel_at_least: int
) -> None:
    width, height = 1024, 768
    picture = gradient(mode, (width, height))
    if mode == "RGBA":  # an alpha plane that is not all opaque, or the encoder drops it
        picture.putalpha(Image.linear_gradient("L").resize((width, height)))
    submitted = encode(picture, image_format, **params)
    tiny = encode(picture.resize((1, 1)), image_format, **params)
    with Image.open(io.BytesIO(submitted)) as header:
        assert header.mode == mode

    assert cleaning_memory_bytes(submitted) - cleaning_memory_bytes(tiny) > (
        width * height * bytes_per_pixel_at_least
    )


def test_a_one_pixel_wide_column_is_priced_by_its_rows() -> None:
    # Pillow keeps a pointer per row: a tall thin picture costs far more than its pixels.
    column, square = png_declaring_size(1, 16_000_000), png_declaring_size(4000, 4000)
    pixel_price = cleaning_memory_bytes(column) - cleaning_memory_bytes(png_declaring_size(1, 1))
    assert pixel_price >= 2 * (16_000_000 - 1) * (4 + 8)  # 4 bytes of RGB and 8 of pointer per row
    assert cleaning_memory_bytes(column) > cleaning_memory_bytes(square) // 3


def jpeg_first_scan_with_one_component(baseline: bytes) -> bytes:
    """The same header, but a first scan that carries one component of three: a sequential file
    libjpeg must buffer whole, as it does a progressive one (the scan data is not read here)."""
    sos = baseline.index(b"\xff\xda")
    length = int.from_bytes(baseline[sos + 2 : sos + 4], "big")
    assert baseline[sos + 4] == 3
    first_component = baseline[sos + 5 : sos + 7]
    one_component = b"\xff\xda\x00\x08\x01" + first_component + b"\x00\x3f\x00"
    return baseline[:sos] + one_component + baseline[sos + 2 + length :]


def test_jpeg_coefficients_are_priced_when_libjpeg_must_keep_them_all() -> None:
    width, height = 640, 480
    baseline = encode(gradient("RGB", (width, height)), "JPEG", quality=90)
    progressive = encode(gradient("RGB", (width, height)), "JPEG", quality=90, progressive=True)
    scanned_apart = jpeg_first_scan_with_one_component(baseline)
    assert abs(len(progressive) - len(baseline)) < 4096

    # 3 components x 2 bytes against the second 4-byte image they outgrow: 2 bytes per pixel more.
    assert cleaning_memory_bytes(progressive) - cleaning_memory_bytes(baseline) > width * height * 3 // 2
    assert cleaning_memory_bytes(scanned_apart) - cleaning_memory_bytes(baseline) > width * height * 3 // 2


@pytest.fixture
def parsing_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if Pillow is handed the file at all: its parsers run inside Image.open."""

    def refuse_to_parse(*_args: object, **_kwargs: object) -> None:
        pytest.fail("the file reached Pillow")

    monkeypatch.setattr(Image, "open", refuse_to_parse)


def gif_header_end(data: bytes) -> int:
    return 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)


def webp_with_chunks(extra: bytes) -> bytes:
    """An extended WebP (VP8X, since it carries EXIF) with `extra` chunks after its VP8X chunk."""
    webp = encode(gradient("RGB", (16, 16)), "WEBP", exif=identifying_exif())
    assert webp[12:16] == b"VP8X"
    body = webp[8:30] + extra + webp[30:]
    return b"RIFF" + struct.pack("<I", len(body)) + body


def made_of_pieces(image_format: str, count: int) -> bytes:
    """A small picture padded with `count` empty pieces its format's parser walks one by one."""
    if image_format == "JPEG":
        jpeg = encode(gradient("RGB", (16, 16)), "JPEG")
        return jpeg[:2] + b"\xff\xe0\x00\x02" * count + jpeg[2:]
    if image_format == "JPEG-stray-bytes":  # between segments, which Pillow reads one by one
        jpeg = encode(gradient("RGB", (16, 16)), "JPEG")
        tables = jpeg.index(b"\xff\xdb")
        return jpeg[:tables] + b"\x00" * count + jpeg[tables:]
    if image_format == "PNG":
        png = encode(gradient("RGB", (16, 16)), "PNG")
        return png[:33] + png_chunk(b"teSt", b"") * count + png[33:]
    if image_format == "GIF":
        gif = encode(gradient("P", (16, 16)), "GIF")
        start = gif_header_end(gif)
        return gif[:start] + b"!\xfe" + b"\x01x" * count + b"\x00" + gif[start:]  # one comment
    assert image_format == "WEBP"
    return webp_with_chunks(b"teSt\x00\x00\x00\x00" * count)


@pytest.mark.parametrize("image_format", ["JPEG", "JPEG-stray-bytes", "PNG", "GIF", "WEBP"])
def test_a_file_of_too_many_pieces_is_refused_before_pillow_parses_it(
    image_format: str, parsing_forbidden: None
) -> None:
    # Pillow's header parsers walk these in Python: a million empty JPEG segments (4 MB) took
    # 134 MB and 1.3 s inside Image.open, before any size could be checked.
    submitted = made_of_pieces(image_format, 200_000)
    with pytest.raises(UnreadableImage):
        clean(submitted, max_pixels=MAX_PIXELS)
    with pytest.raises(UnreadableImage):
        cleaning_memory_bytes(submitted)


@pytest.mark.parametrize("image_format", ["JPEG", "JPEG-stray-bytes", "PNG", "GIF", "WEBP"])
def test_a_file_of_many_pieces_within_the_limit_is_cleaned(image_format: str) -> None:
    submitted = made_of_pieces(image_format, 1_000)
    assert reopen(clean(submitted, max_pixels=MAX_PIXELS)).size == (16, 16)


# ---------------------------------------------------------------- memory: the budget


def test_image_over_the_budget_is_refused_before_decoding(decoding_forbidden: list[str]) -> None:
    budget = ImageMemoryBudget(limit_bytes=64 * MEBIBYTE, wait_seconds=0)
    bomb = png_declaring_size(4000, 4000)  # 16 M pixels: within the pixel limit, 128 MB as RGB twice

    with budget.reservation() as memory, pytest.raises(ImageExceedsMemoryBudget) as refused:
        clean_image(bomb, max_pixels=HARD_PIXEL_CEILING, memory=memory)

    assert decoding_forbidden == []
    assert isinstance(refused.value, ImageTooLarge)
    assert (refused.value.status, refused.value.code) == (413, "image_too_large")
    assert budget.in_use_bytes == 0


def test_an_image_fitting_the_budget_is_cleaned_within_it() -> None:
    submitted = encode(gradient("RGB", (300, 200)), "PNG")
    budget = ImageMemoryBudget(limit_bytes=cleaning_memory_bytes(submitted), wait_seconds=0)
    with budget.reservation() as memory:
        assert reopen(clean_image(submitted, max_pixels=MAX_PIXELS, memory=memory)).size == (300, 200)
    assert budget.in_use_bytes == 0


def test_reservations_beyond_the_budget_wait_then_are_refused_with_503() -> None:
    budget = ImageMemoryBudget(limit_bytes=100, wait_seconds=0.05)
    with budget.reservation() as first, budget.reservation() as second:
        first.grow_to(80)
        with pytest.raises(ImageCleaningBusy) as refused:
            second.grow_to(30)
        assert (refused.value.status, refused.value.code) == (503, "busy")
        assert (second.held_bytes, budget.in_use_bytes) == (0, 80)
        second.grow_to(20)  # what still fits is granted at once
        assert budget.in_use_bytes == 100


def test_a_waiting_reservation_goes_ahead_when_memory_is_given_back() -> None:
    budget = ImageMemoryBudget(limit_bytes=100, wait_seconds=30)
    first, second = budget.reservation(), budget.reservation()
    first.grow_to(80)

    def finish_first_image() -> None:
        time.sleep(0.05)  # let the second start waiting
        first.release()

    other_thread = threading.Thread(target=finish_first_image)
    other_thread.start()
    second.grow_to(30)  # waits until the other thread gives the 80 back
    other_thread.join()

    assert (first.held_bytes, second.held_bytes, budget.in_use_bytes) == (0, 30, 30)
    second.release()


def test_an_image_alone_beyond_the_budget_is_refused_without_waiting() -> None:
    budget = ImageMemoryBudget(limit_bytes=100, wait_seconds=30)  # a wait would hang the test
    with budget.reservation() as memory, pytest.raises(ImageExceedsMemoryBudget):
        memory.grow_to(101)
    assert budget.in_use_bytes == 0


def test_a_reservation_shrinks_and_releases_once() -> None:
    budget = ImageMemoryBudget(limit_bytes=100, wait_seconds=0)
    memory = budget.reservation()
    memory.grow_to(60)
    memory.grow_to(40)  # already holds as much
    assert budget.in_use_bytes == 60
    memory.shrink_to(25)
    assert budget.in_use_bytes == 25
    memory.release()
    memory.release()
    assert budget.in_use_bytes == 0


def _refuse_to_store(_piece: bytes) -> None:
    raise PayloadTooLarge


SMALL_PNG = encode(gradient("RGB", (64, 48)), "PNG")


@pytest.mark.parametrize(
    ("submitted", "max_pixels", "write", "expected"),
    [
        pytest.param(SMALL_PNG, MAX_PIXELS, None, None, id="cleaned"),
        pytest.param(SMALL_PNG, 100, None, ImageTooLarge, id="too-many-pixels"),
        pytest.param(SMALL_PNG[:100], MAX_PIXELS, None, UnreadableImage, id="unreadable"),
        pytest.param(
            encode(gradient("RGB", (64, 48)), "JPEG"),
            MAX_PIXELS,
            _refuse_to_store,
            PayloadTooLarge,
            id="write-raises",
        ),
        pytest.param(
            png_declaring_size(8000, 8000),
            HARD_PIXEL_CEILING,
            None,
            ImageExceedsMemoryBudget,
            id="over-budget",
        ),
    ],
)
def test_cleaning_gives_back_what_it_reserved_however_it_ends(
    submitted: bytes, max_pixels: int, write: Any, expected: type[Exception] | None
) -> None:
    budget = ImageMemoryBudget(limit_bytes=256 * MEBIBYTE, wait_seconds=0)
    memory = budget.reservation()
    memory.grow_to(len(submitted))  # what the caller reserved while the file arrived
    received: list[bytes] = []

    if expected is None:
        clean_image_into(submitted, write or received.append, max_pixels=max_pixels, memory=memory)
        assert received
    else:
        with pytest.raises(expected):
            clean_image_into(submitted, write or received.append, max_pixels=max_pixels, memory=memory)

    assert (memory.held_bytes, budget.in_use_bytes) == (len(submitted), len(submitted))
    memory.release()
    assert budget.in_use_bytes == 0


def test_cleaning_holds_the_price_while_it_works(monkeypatch: pytest.MonkeyPatch) -> None:
    submitted = encode(gradient("RGBA", (640, 480)), "PNG")
    budget = ImageMemoryBudget(limit_bytes=256 * MEBIBYTE, wait_seconds=0)
    held_while_decoding: list[int] = []
    real_load = ImageFile.ImageFile.load

    def recording_load(self: ImageFile.ImageFile) -> Any:
        held_while_decoding.append(budget.in_use_bytes)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    with budget.reservation() as memory:
        clean_image(submitted, max_pixels=MAX_PIXELS, memory=memory)

    assert held_while_decoding[0] == cleaning_memory_bytes(submitted)


# ---------------------------------------------------------------- memory: issue 13's 16-bit PNG


@pytest.fixture(scope="module")
def sixteen_bit_png() -> bytes:
    data = png_16bit_rgba_bomb(7000, 7000)  # 392 MB of 16-bit samples
    assert len(data) < 1024 * 1024
    return data


def test_the_16bit_png_of_the_report_is_priced_as_8bit_rgba_and_fits_the_default_budget(
    sixteen_bit_png: bytes, decoding_forbidden: list[str]
) -> None:
    price = cleaning_memory_bytes(sixteen_bit_png)
    assert 2 * 7000 * 7000 * 4 < price <= DEFAULT_BUDGET
    assert decoding_forbidden == []


def test_the_16bit_png_of_the_report_is_refused_before_decoding_by_a_smaller_budget(
    sixteen_bit_png: bytes, decoding_forbidden: list[str]
) -> None:
    budget = ImageMemoryBudget(limit_bytes=256 * MEBIBYTE, wait_seconds=0)
    with budget.reservation() as memory, pytest.raises(ImageExceedsMemoryBudget):
        clean_image(sixteen_bit_png, max_pixels=50_000_000, memory=memory)
    assert decoding_forbidden == []
    assert budget.in_use_bytes == 0


def test_the_16bit_png_of_the_report_is_cleaned_within_the_default_budget(sixteen_bit_png: bytes) -> None:
    # Measured, not asserted (a shared machine's clock says little): about 2 s of CPU and 0.4 GB at
    # its peak; at zlib's default level the re-encoding alone took longer.
    budget = ImageMemoryBudget(limit_bytes=DEFAULT_BUDGET, wait_seconds=0)
    with budget.reservation() as memory:
        cleaned = clean_image(sixteen_bit_png, max_pixels=50_000_000, memory=memory)
    assert budget.in_use_bytes == 0
    with Image.open(io.BytesIO(cleaned.data)) as header:
        assert (header.format, header.mode, header.size) == ("PNG", "RGBA", (7000, 7000))
    assert set(png_chunk_types(cleaned.data)) <= {b"IHDR", b"IDAT", b"IEND"}


def test_16bit_colour_comes_out_as_8bit_keeping_the_high_byte() -> None:
    image = reopen(clean(png_16bit_rgba_bomb(64, 16), max_pixels=MAX_PIXELS))
    assert image.mode == "RGBA"
    assert image.getpixel((3, 0)) == (24, 26, 28, 30)  # samples 0x1819, 0x1a1b, 0x1c1d, 0x1e1f
    assert image.getpixel((3, 15)) == (24, 26, 28, 30)


# ---------------------------------------------------------------- memory: the attachment writer


class MemoryBlobStore:
    """Blob storage in a dict, for watching what the writer stores."""

    def __init__(self) -> None:
        self.blobs: dict[uuid.UUID, io.BytesIO] = {}

    def create(self, blob_id: uuid.UUID) -> io.BytesIO:
        self.blobs[blob_id] = io.BytesIO()
        self.blobs[blob_id].close = lambda: None  # type: ignore[method-assign]  # kept readable
        return self.blobs[blob_id]


def make_writer(
    budget: ImageMemoryBudget, *, max_bytes: int = 10 * MEBIBYTE, clean_images: bool = True
) -> tuple[AttachmentWriter, MemoryBlobStore]:
    store = MemoryBlobStore()
    writer = AttachmentWriter(
        attachment_id=uuid.uuid4(),
        data_key=envelope.new_data_key(),
        key_version=1,
        blob_store=store,
        max_bytes=max_bytes,  # type: ignore[arg-type]
        content_type="image/png",
        clean_images=clean_images,
        max_image_bytes=4 * MEBIBYTE,
        max_image_pixels=MAX_PIXELS,
        image_memory=budget,
    )
    return writer, store


def stored_plaintext(writer: AttachmentWriter, store: MemoryBlobStore) -> bytes:
    sealed = io.BytesIO(store.blobs[writer.attachment_id].getvalue())
    return b"".join(ATTACHMENT_BLOB.decrypt_chunks(sealed, writer.data_key, row_id=str(writer.attachment_id)))


def pieces(data: bytes, size: int = 4096) -> Iterator[bytes]:
    return (data[start : start + size] for start in range(0, len(data), size))


def noisy_png(size: tuple[int, int] = (320, 240)) -> bytes:
    """A PNG of noise: as large as its pixels (a gradient would fit in one upload chunk)."""
    pixels = random.Random(11).randbytes(size[0] * size[1] * 3)
    return encode(Image.frombytes("RGB", size, pixels), "PNG", exif=identifying_exif())


def test_writer_reserves_an_image_as_it_streams_in_and_releases_it_when_stored() -> None:
    submitted = noisy_png()
    budget = ImageMemoryBudget(limit_bytes=256 * MEBIBYTE, wait_seconds=0)
    writer, store = make_writer(budget)

    for piece in pieces(submitted[:8192]):
        writer.write(piece)
    assert budget.in_use_bytes == 8192
    for piece in pieces(submitted[8192:]):
        writer.write(piece)
    assert budget.in_use_bytes == len(submitted)
    writer.close()

    assert budget.in_use_bytes == 0
    stored = stored_plaintext(writer, store)
    assert (writer.metadata, writer.content_type, writer.size) == (
        MetadataOutcome.REMOVED,
        "image/png",
        len(stored),
    )
    assert b"eXIf" not in stored
    writer.abort()  # the route's finally aborts every writer, closed or not
    assert budget.in_use_bytes == 0


def test_writer_releases_an_image_cut_off_mid_upload() -> None:
    budget = ImageMemoryBudget(limit_bytes=256 * MEBIBYTE, wait_seconds=0)
    writer, _ = make_writer(budget)
    writer.write(noisy_png()[:5000])
    assert budget.in_use_bytes == 5000
    writer.abort()
    assert budget.in_use_bytes == 0


def test_writer_releases_an_image_refused_when_the_part_ends(decoding_forbidden: list[str]) -> None:
    budget = ImageMemoryBudget(limit_bytes=64 * MEBIBYTE, wait_seconds=0)
    writer, _ = make_writer(budget)
    writer.write(png_declaring_size(4000, 4000))
    with pytest.raises(ImageExceedsMemoryBudget):
        writer.close()
    assert budget.in_use_bytes == 0
    writer.abort()
    assert decoding_forbidden == []


def test_writer_refuses_an_image_when_others_hold_the_budget_and_gives_back_its_bytes() -> None:
    budget = ImageMemoryBudget(limit_bytes=64 * MEBIBYTE, wait_seconds=0.05)
    with budget.reservation() as others:
        others.grow_to(64 * MEBIBYTE - 10_000)
        writer, _ = make_writer(budget)
        first, second, third = list(pieces(noisy_png()))[:3]
        writer.write(first)
        writer.write(second)  # 8 kB held, under the 10 kB left
        with pytest.raises(ImageCleaningBusy):
            writer.write(third)
        writer.abort()
        assert budget.in_use_bytes == others.held_bytes


def test_writer_never_reserves_for_files_that_are_not_images() -> None:
    budget = ImageMemoryBudget(limit_bytes=64 * MEBIBYTE, wait_seconds=0)
    with budget.reservation() as others:
        others.grow_to(64 * MEBIBYTE)  # a full budget must not hold up a PDF
        writer, store = make_writer(budget)
        document = b"%PDF-1.7\n" + random.Random(3).randbytes(100_000)
        for piece in pieces(document):
            writer.write(piece)
        writer.close()
    assert stored_plaintext(writer, store) == document
    assert writer.metadata == MetadataOutcome.NOT_REMOVED


def test_writer_refuses_a_cleaned_image_larger_than_the_file_limit() -> None:
    # 15 kB whose pixels are close to noise re-encode to 16 times that: the stored file would be
    # past the file limit that the upload itself kept to.
    submitted = png_decoding_to_noise(1100, 200)
    assert len(submitted) < 16 * 1024
    budget = ImageMemoryBudget(limit_bytes=256 * MEBIBYTE, wait_seconds=0)
    writer, _ = make_writer(budget, max_bytes=64 * 1024)
    writer.write(submitted)
    with pytest.raises(ImageTooLarge):
        writer.close()
    writer.abort()
    assert budget.in_use_bytes == 0


# ---------------------------------------------------------------- sniffing and the public surface


@pytest.mark.parametrize(
    ("image_format", "mode", "expected"),
    [
        ("JPEG", "RGB", "image/jpeg"),
        ("PNG", "RGBA", "image/png"),
        ("GIF", "P", "image/gif"),
        ("WEBP", "RGB", "image/webp"),
        ("WEBP", "RGBA", "image/webp"),
    ],
)
def test_sniff_recognises_real_images(image_format: str, mode: str, expected: str) -> None:
    data = encode(gradient(mode, (8, 8)), image_format)
    assert sniff_image(data[:SNIFF_BYTES]) == expected


def test_sniff_recognises_lossless_webp() -> None:
    data = encode(gradient("RGB", (8, 8)), "WEBP", lossless=True)
    assert sniff_image(data[:SNIFF_BYTES]) == "image/webp"


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"", id="empty"),
        pytest.param(b"Hello, this is text", id="text"),
        pytest.param(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", id="pdf"),
        pytest.param(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", id="heic"),
        pytest.param(b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00", id="avif"),
        pytest.param(b"\xff\xd8", id="short-jpeg"),
        pytest.param(b"\x89PNG\r\n", id="short-png"),
        pytest.param(b"GIF8", id="short-gif"),
        pytest.param(b"RIFF\x10\x00\x00\x00WEB", id="short-webp"),
        pytest.param(b"RIFF\x10\x00\x00\x00WAVEfmt ", id="riff-wave"),
        pytest.param(b"BM6\x00\x00\x00\x00\x00\x00\x006\x00\x00\x00(\x00", id="bmp"),
        pytest.param(b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", id="tiff"),
    ],
)
def test_sniff_refuses_everything_else(head: bytes) -> None:
    assert sniff_image(head) is None


def test_sniff_ignores_what_follows_the_magic_bytes() -> None:
    assert sniff_image(b"\xff\xd8\xff" + b"not really a jpeg") == "image/jpeg"


def test_error_classes_fit_the_error_model() -> None:
    too_large, unreadable = ImageTooLarge(), UnreadableImage()
    assert isinstance(too_large, PayloadTooLarge)
    assert (too_large.status, too_large.code) == (413, "image_too_large")
    assert isinstance(unreadable, InvalidInput)
    assert (unreadable.status, unreadable.code) == (422, "unreadable_image")


def test_metadata_outcome_values_are_stable() -> None:
    # The values are the interface the intake service codes against.
    assert [outcome.value for outcome in MetadataOutcome] == ["removed", "not_removed"]
