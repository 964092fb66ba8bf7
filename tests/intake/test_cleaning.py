"""Metadata removal from submitted images (app.intake.cleaning).

Every fixture is generated here with Pillow, and each test first checks that
its fixture really carries what the test claims to remove: a test whose input
had no GPS tag in the first place would pass for the wrong reason.
"""

from __future__ import annotations

import io
import random
import struct
import time
import zlib
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

from app.errors import InvalidInput, PayloadTooLarge
from app.intake.cleaning import (
    HARD_PIXEL_CEILING,
    SNIFF_BYTES,
    CleanedImage,
    ImageTooLarge,
    MetadataOutcome,
    UnreadableImage,
    clean_image,
    sniff_image,
)

MAX_PIXELS = 4_000_000
MAKE = "SpyCamCorp"
MODEL = "Model-X9"
SERIAL = "SN-4815162342"
MAKER_NOTE = b"MAKERNOTE-OWNER-ID-77"
TAKEN_AT = "2024:03:01 12:34:56"
COMMENT = b"sent from the flat on Rue Example"
XMP = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:CreatorTool="SpyCamCorp Camera App"/>'
       b"</rdf:RDF></x:xmpmeta>")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROPERTY = settings(max_examples=200, deadline=None, database=None)


# ---------------------------------------------------------------- fixtures


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


def png_declaring_size(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height, with a few bytes of pixel data: a tiny bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return (PNG_SIGNATURE + png_chunk(b"IHDR", header)
            + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b""))


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
    submitted = encode(original, "JPEG", quality=95, exif=identifying_exif(), icc_profile=srgb_icc_profile(),
                       xmp=XMP, comment=COMMENT)
    with Image.open(io.BytesIO(submitted)) as fixture:  # the fixture carries everything we claim
        assert fixture.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitudeRef] == "N"
        assert {"icc_profile", "xmp", "exif", "comment"} <= fixture.info.keys()
    for needle in (b"Exif", MAKE.encode(), SERIAL.encode(), MAKER_NOTE, b"http://ns.adobe.com/xap", COMMENT):
        assert needle in submitted

    cleaned = clean_image(submitted, max_pixels=MAX_PIXELS)

    assert cleaned.content_type == "image/jpeg"
    image = reopen(cleaned)
    assert isinstance(image, JpegImagePlugin.JpegImageFile)
    assert len(image.getexif()) == 0
    assert not {"icc_profile", "xmp", "exif", "comment", "photoshop", "adobe"} & image.info.keys()
    assert not [marker for marker, _ in image.applist if marker != "APP0"]  # only the JFIF header
    for needle in (b"Exif", b"GPS", MAKE.encode(), MODEL.encode(), SERIAL.encode(), MAKER_NOTE,
                   TAKEN_AT.encode(), b"http://ns.adobe.com/xap", COMMENT, b"ICC_PROFILE"):
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

    image = reopen(clean_image(submitted, max_pixels=MAX_PIXELS))

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

    cleaned = clean_image(submitted, max_pixels=MAX_PIXELS)

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
    submitted = encode(original, "WEBP", quality=95, exif=identifying_exif(), xmp=XMP,
                       icc_profile=srgb_icc_profile())
    assert {b"EXIF", b"XMP ", b"ICCP"} <= set(riff_chunk_types(submitted))

    cleaned = clean_image(submitted, max_pixels=MAX_PIXELS)

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
    submitted = encode(first, "GIF", save_all=True, append_images=[second], comment=COMMENT, duration=100,
                       loop=0)
    with Image.open(io.BytesIO(submitted)) as fixture:
        assert isinstance(fixture, GifImagePlugin.GifImageFile)
        assert fixture.n_frames == 2
        assert fixture.info["comment"] == COMMENT

    cleaned = clean_image(submitted, max_pixels=MAX_PIXELS)

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

    cleaned = clean_image(submitted, max_pixels=MAX_PIXELS)

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

    rgba = reopen(clean_image(submitted, max_pixels=MAX_PIXELS)).convert("RGBA")

    assert rgba.getpixel((1, 1)) == (0, 0, 0, 0)
    assert rgba.getpixel((8, 1)) == (0, 200, 0, 255)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "I;16", "P", "RGB", "RGBA"])
def test_png_modes_round_trip_pixel_for_pixel(mode: str) -> None:
    original = gradient("RGB").convert(mode) if mode != "I;16" else gradient("L").convert("I;16")
    submitted = encode(original, "PNG")

    image = reopen(clean_image(submitted, max_pixels=MAX_PIXELS))

    assert image.mode == original.mode
    assert image.tobytes() == original.tobytes()
    if mode == "P":
        assert image.getpalette() == original.getpalette()


@pytest.mark.parametrize("mode", ["L", "RGB", "CMYK"])
def test_jpeg_keeps_its_colour_mode(mode: str) -> None:
    original = gradient(mode)
    submitted = encode(original, "JPEG", quality=95, exif=identifying_exif())

    image = reopen(clean_image(submitted, max_pixels=MAX_PIXELS))

    assert image.mode == mode
    assert len(image.getexif()) == 0
    assert mean_difference(image, original) < 3


# ---------------------------------------------------------------- decompression bombs


def test_image_at_the_limit_is_accepted_and_one_pixel_over_is_refused() -> None:
    submitted = encode(gradient("RGB", (10, 10)), "PNG")
    assert reopen(clean_image(submitted, max_pixels=100)).size == (10, 10)
    with pytest.raises(ImageTooLarge):
        clean_image(submitted, max_pixels=99)


def test_oversized_header_is_refused_before_any_decoding(decoding_forbidden: list[str]) -> None:
    bomb = png_declaring_size(8000, 8000)  # 64 M pixels in ~100 bytes; below Pillow's own limit
    assert len(bomb) < 200

    started = time.perf_counter()
    with pytest.raises(ImageTooLarge) as refused:
        clean_image(bomb, max_pixels=1_000_000)

    assert time.perf_counter() - started < 1
    assert decoding_forbidden == []
    assert refused.value.status == 413
    assert refused.value.code == "image_too_large"


def test_small_bomb_within_the_limit_would_have_been_decoded() -> None:
    # The control for the test above: with the limit raised, the same kind of
    # file reaches the decoder (and fails there, its pixel data being fake).
    with pytest.raises(UnreadableImage):
        clean_image(png_declaring_size(300, 300), max_pixels=1_000_000)


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
        clean_image(png_declaring_size(width, height), max_pixels=HARD_PIXEL_CEILING)


def test_pillow_bomb_warning_outside_the_test_suite_still_ends_as_image_too_large(
        decoding_forbidden: list[str]) -> None:
    # In production the warning is only printed, and Image.open goes on: our
    # own check must refuse the image then.
    with pytest.warns(Image.DecompressionBombWarning), pytest.raises(ImageTooLarge):
        clean_image(png_declaring_size(9_000, 9_000), max_pixels=HARD_PIXEL_CEILING)
    assert decoding_forbidden == []


def test_own_check_holds_when_pillows_limit_is_disabled(monkeypatch: pytest.MonkeyPatch,
                                                         decoding_forbidden: list[str]) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(ImageTooLarge):
        clean_image(png_declaring_size(60_000, 60_000), max_pixels=HARD_PIXEL_CEILING)
    assert decoding_forbidden == []


def test_pillow_limit_is_the_documented_ceiling() -> None:
    assert Image.MAX_IMAGE_PIXELS == HARD_PIXEL_CEILING


@pytest.mark.parametrize("max_pixels", [0, -1, HARD_PIXEL_CEILING + 1])
def test_max_pixels_outside_the_ceiling_is_a_programming_error(max_pixels: int) -> None:
    with pytest.raises(ValueError, match="max_pixels"):
        clean_image(encode(gradient("RGB", (4, 4)), "PNG"), max_pixels=max_pixels)


# ---------------------------------------------------------------- unreadable input


def test_truncated_jpeg_is_unreadable() -> None:
    submitted = encode(gradient("RGB", (200, 150)), "JPEG", quality=95)
    with pytest.raises(UnreadableImage) as refused:
        clean_image(submitted[: len(submitted) // 2], max_pixels=MAX_PIXELS)
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
        clean_image(data, max_pixels=MAX_PIXELS)


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
        clean_image(data, max_pixels=MAX_PIXELS)

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
        cleaned = clean_image(bytes(submitted[:cut]), max_pixels=100_000)
    except (UnreadableImage, ImageTooLarge):
        return
    assert MAKE.encode() not in cleaned.data
    assert len(reopen(cleaned).getexif()) == 0



# ---------------------------------------------------------------- sniffing and the public surface


@pytest.mark.parametrize(
    ("image_format", "mode", "expected"),
    [("JPEG", "RGB", "image/jpeg"), ("PNG", "RGBA", "image/png"), ("GIF", "P", "image/gif"),
     ("WEBP", "RGB", "image/webp"), ("WEBP", "RGBA", "image/webp")],
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
