"""Peak memory and CPU of photo cleaning, measured against what `cleaning_memory_bytes` reserves.

    .venv/bin/python bench/image_cleaning.py [--size 4000x3000] [--only NAME ...]

Each case is a generated file (photo-like content, noise, bulky metadata, odd shapes, the 16-bit
PNG of issue 13) cleaned in a fresh process, as the intake writer does it: the file is reserved,
then `clean_image_into` streams the new file to a sink that keeps nothing. The process's peak RSS
above its resting RSS (Linux: VmHWM after clear_refs) is set beside the reservation minus the file,
which the process already held. ``margin`` below 1.0 means the model under-counts: a bug.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random  # test content, not secrets: S311 below
import struct
import subprocess
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageFilter

ROOT = Path(os.environ.get("DAYLIGHT_ROOT", Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(ROOT))

from app.intake import cleaning  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

CHILD = r"""
import json, sys, time
sys.path.insert(0, sys.argv[2])
from app.intake import cleaning

data = open(sys.argv[1], "rb").read()
budget = cleaning.ImageMemoryBudget(limit_bytes=1 << 40, wait_seconds=0)

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(field))

with budget.reservation() as memory:
    memory.grow_to(len(data))  # what the writer reserved as the file streamed in
    resting = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak
    written = 0
    def sink(piece):
        global written
        written += len(piece)
    started = time.process_time()
    try:
        cleaning.clean_image_into(data, sink, max_pixels=cleaning.HARD_PIXEL_CEILING, memory=memory)
        outcome = "cleaned"
    except Exception as exc:  # the figure is still worth having
        outcome = type(exc).__name__
    cpu = time.process_time() - started
print(json.dumps({"outcome": outcome, "peak": status("VmHWM") - resting, "cpu": cpu, "written": written}))
"""


def photo_like(size: tuple[int, int], mode: str) -> Image.Image:
    """Smooth gradients under sensor-like noise: compresses (and costs) roughly as a photo does."""
    ramp = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise(size, 40)
    bands = [
        Image.blend(ramp, noise, 0.3),
        Image.blend(ramp.transpose(Image.Transpose.ROTATE_90).resize(size), noise, 0.2),
        Image.blend(ramp.transpose(Image.Transpose.FLIP_TOP_BOTTOM), noise, 0.4),
    ]
    image = Image.merge("RGB", bands)
    if mode == "RGBA":
        image.putalpha(ramp.filter(ImageFilter.BoxBlur(2)))
        return image
    return image.convert(mode)


def noise(size: tuple[int, int], mode: str) -> Image.Image:
    """The encoders' worst case: nothing to predict, nothing to match."""
    rgba = Image.merge("RGBA", [Image.effect_noise(size, 120) for _ in range(4)])
    return rgba if mode == "RGBA" else rgba.convert(mode)


def encode(image: Image.Image, image_format: str, **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=image_format, **params)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_16bit(width: int, height: int, colour_type: int, *, interlaced: bool) -> bytes:
    """A 16-bit PNG that compresses ~500:1: one random row, then rows equal to the one above
    ("Up" filter, zero residue), per Adam7 pass when interlaced. Interlaced, the 8-bit pixels it
    decodes to are noise, the PNG encoder's slowest input: the report's 9.5 s."""
    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    passes = (
        [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        if interlaced
        else [(0, 0, 1, 1)]
    )
    randomness, compressor, idat = random.Random(13), zlib.compressobj(9), []  # noqa: S311
    for x0, y0, dx, dy in passes:
        pass_width, pass_height = (width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy
        if not pass_width or not pass_height:
            continue
        row_bytes = pass_width * channels * 2
        idat.append(compressor.compress(b"\x00" + randomness.randbytes(row_bytes)))
        same_as_above = b"\x02" + bytes(row_bytes)
        idat.extend(compressor.compress(same_as_above) for _ in range(pass_height - 1))
    idat.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 1 if interlaced else 0)
    return (
        PNG_SIGNATURE
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"".join(idat))
        + png_chunk(b"IEND", b"")
    )


def jpeg_with_bulky_metadata(size: tuple[int, int]) -> bytes:
    """~20 MB of APP segments (EXIF with an orientation, ICC pieces, comments): the parser's worst."""
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate: exercises exif_transpose's copy
    exif[0x010E] = "x" * 60_000
    icc = random.Random(1).randbytes(16_000_000)  # noqa: S311
    return encode(
        photo_like(size, "RGB"),
        "JPEG",
        quality=90,
        exif=exif.tobytes(),
        icc_profile=icc,
        comment=b"c" * 60_000,
    )


def png_with_bulky_chunks(size: tuple[int, int]) -> bytes:
    """A PNG carrying an eXIf chunk of 10 MB and text up to Pillow's 64 MiB cap, before IDAT."""
    plain = encode(photo_like(size, "RGB"), "PNG", compress_level=1)
    ihdr_end = len(PNG_SIGNATURE) + 25
    megabyte_of_text = zlib.compress(b"t" * (1024 * 1024 - 64))
    text = b"".join(png_chunk(b"zTXt", b"note%d\x00\x00" % i + megabyte_of_text) for i in range(60))
    exif = png_chunk(b"eXIf", b"MM\x00*" + random.Random(2).randbytes(10_000_000))  # noqa: S311
    return plain[:ihdr_end] + exif + text + plain[ihdr_end:]


def empty_segments(jpeg: bytes, count: int) -> bytes:
    return jpeg[:2] + b"\xff\xe0\x00\x02" * count + jpeg[2:]


def cases(size: tuple[int, int]) -> dict[str, Callable[[], bytes]]:
    photo = lambda mode: photo_like(size, mode)  # noqa: E731
    return {
        "jpeg rgb": lambda: encode(photo("RGB"), "JPEG", quality=90),
        "jpeg rgb 4:4:4 progressive": lambda: encode(
            photo("RGB"), "JPEG", quality=95, subsampling=0, progressive=True
        ),
        "jpeg cmyk progressive": lambda: encode(photo("CMYK"), "JPEG", quality=90, progressive=True),
        "jpeg grey": lambda: encode(photo("L"), "JPEG", quality=90),
        "jpeg bulky metadata": lambda: jpeg_with_bulky_metadata(size),
        "jpeg 99,000 empty segments": lambda: empty_segments(encode(photo("RGB"), "JPEG"), 99_000),
        "jpeg 8M empty segments (refused)": lambda: empty_segments(encode(photo("RGB"), "JPEG"), 8_000_000),
        "png 99,000 empty chunks": lambda: (lambda p: p[:33] + png_chunk(b"teSt", b"") * 99_000 + p[33:])(
            encode(photo("RGB"), "PNG", compress_level=1)
        ),
        "png rgb photo": lambda: encode(photo("RGB"), "PNG", compress_level=1),
        "png rgba noise": lambda: encode(noise(size, "RGBA"), "PNG", compress_level=0),
        "png grey 16-bit": lambda: encode(photo("L").convert("I;16"), "PNG"),
        "png palette": lambda: encode(photo("P"), "PNG"),
        "png 1-bit": lambda: encode(photo("1"), "PNG"),
        "png grey+alpha": lambda: encode(photo("RGBA").convert("LA"), "PNG"),
        "png bulky chunks": lambda: png_with_bulky_chunks(size),
        "png column 1 x 16M": lambda: encode(Image.new("L", (1, 16_000_000), 7), "PNG"),
        "png row 4M x 1": lambda: encode(Image.new("RGBA", (4_000_000, 1), 7), "PNG"),
        "png 16-bit rgba row 4M x 1": lambda: png_16bit(4_000_000, 1, 6, interlaced=False),
        "png 16-bit rgba 7000x7000": lambda: png_16bit(7000, 7000, 6, interlaced=False),
        "png 16-bit rgba 7000x7000 interlaced": lambda: png_16bit(7000, 7000, 6, interlaced=True),
        "gif": lambda: encode(photo("P"), "GIF"),
        "webp rgb photo": lambda: encode(photo("RGB"), "WEBP", quality=90),
        "webp rgba photo": lambda: encode(photo("RGBA"), "WEBP", quality=90),
        "webp rgb noise": lambda: encode(noise(size, "RGB"), "WEBP", quality=90),
        "webp rgba noise": lambda: encode(noise(size, "RGBA"), "WEBP", quality=90),
        "webp rgb lossless noise": lambda: encode(noise(size, "RGB"), "WEBP", lossless=True, method=0),
    }


def measure(data: bytes, workdir: Path) -> dict[str, object]:
    path = workdir / "submitted"
    path.write_bytes(data)
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), str(ROOT)], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(completed.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4000x3000", help="of the generated photos, WxH")
    parser.add_argument("--only", nargs="*", help="case names containing any of these words")
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.split("x"))
    mib = 1024 * 1024
    print(f"{'case':38} {'file':>8} {'peak':>9} {'reserved':>9} {'margin':>6} {'cpu':>6}  outcome")
    with tempfile.TemporaryDirectory() as workdir:
        for name, make in cases((width, height)).items():
            if args.only and not any(word in name for word in args.only):
                continue
            data = make()
            try:
                reserved: int | None = cleaning.cleaning_memory_bytes(data) - len(data)
            except cleaning.UnreadableImage:
                reserved = None  # refused before Pillow sees it
            result = measure(data, Path(workdir))
            peak = int(str(result["peak"]))
            priced = (
                f"{reserved / mib:8.0f}M {reserved / max(peak, 1):6.2f}"
                if reserved is not None
                else f"{'-':>9} {'-':>6}"
            )
            print(
                f"{name:38} {len(data) / mib:7.1f}M {peak / mib:8.0f}M {priced} "
                f"{float(str(result['cpu'])):5.2f}s  {result['outcome']}",
                flush=True,
            )


if __name__ == "__main__":
    main()
