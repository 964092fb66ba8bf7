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
wait for a slot no longer than `CLEANING_WAIT_SECONDS` (`app.intake.attachments`).

Where each part lives: `formats` recognises files and is the only way submitter bytes reach
Pillow; `file_structure` counts the pieces a parser would walk; `memory_price` prices an image
from its header; `memory_budget` holds those prices against the process's budget; `reencoding`
copies the pixels into a new file.
"""

from app.intake.cleaning.documents import (
    SNIFF_DOCUMENT_BYTES,
    CleanedDocument,
    DocumentKind,
    DocumentNotCleaned,
    clean_document,
    sniff_document,
)
from app.intake.cleaning.errors import (
    ImageCleaningBusy,
    ImageExceedsMemoryBudget,
    ImageTooLarge,
    UnreadableImage,
)
from app.intake.cleaning.formats import HARD_PIXEL_CEILING, SNIFF_BYTES, sniff_image
from app.intake.cleaning.memory_budget import CLEANING_WAIT_SECONDS, ImageMemoryBudget, ImageMemoryReservation
from app.intake.cleaning.memory_price import cleaning_memory_bytes
from app.intake.cleaning.reencoding import CleanedImage, MetadataOutcome, clean_image, clean_image_into

__all__ = [
    "CLEANING_WAIT_SECONDS",
    "HARD_PIXEL_CEILING",
    "SNIFF_BYTES",
    "SNIFF_DOCUMENT_BYTES",
    "CleanedDocument",
    "CleanedImage",
    "DocumentKind",
    "DocumentNotCleaned",
    "ImageCleaningBusy",
    "ImageExceedsMemoryBudget",
    "ImageMemoryBudget",
    "ImageMemoryReservation",
    "ImageTooLarge",
    "MetadataOutcome",
    "UnreadableImage",
    "clean_document",
    "clean_image",
    "clean_image_into",
    "cleaning_memory_bytes",
    "sniff_document",
    "sniff_image",
]
