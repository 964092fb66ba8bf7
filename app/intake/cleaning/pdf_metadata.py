"""Removing identifying metadata from a PDF, with pikepdf (QPDF). Runs in the confined child only
(`document_worker`); the package docstring of `documents` gives the threat and the contract.

Removed:
- the trailer's document information (/Info: Author, Creator, Producer, Title, Subject, Keywords,
  dates), every other trailer entry but /Root and /Size, and the /ID: the file is written with a
  new one computed from its new content (QPDF keeps the first half of an old /ID unless it is
  deleted, and a time-based one would date the upload), so it cannot be matched with the copy on
  the author's disk;
- XMP (/Metadata) wherever it hangs: catalog, pages, images, fonts, forms; private application
  data (/PieceInfo, /LastModified); page thumbnails (/Thumb: a stale one shows the page before it
  was edited); OPI dictionaries (/OPI: the path of the original high-resolution image);
  /CreationDate and /ModDate anywhere;
- embedded files: the /EmbeddedFiles name tree, associated files (/AF), the portfolio view
  (/Collection), the content of every file specification (/EF, /RF) and of every embedded file
  stream; FileAttachment, Sound (a recorded voice) and RichMedia annotations are dropped from
  their pages;
- scripts and actions that run code, reach files or the network: the /JavaScript name tree, the
  catalog's /OpenAction (whatever it does), /AA additional actions everywhere (catalog, pages,
  annotations, form fields), /JS wherever it appears, and every action whose /S is JavaScript,
  Launch, SubmitForm, ImportData, GoToE, GoToR, RichMediaExecute or Rendition: taken out of the
  /A and /Next entries that point to it (a /Next chain is cut there) and emptied itself;
  AcroForm's /XFA (an XML form that carries its own scripts and often its own metadata);
  /AlternatePresentations (slide shows, which may script);
- on annotations other than form widgets: the author (/T), modification and creation dates (/M,
  /CreationDate) and unique name (/NM); on widgets, /M (their /T is the form field's name);
- digital signatures: the value of signature fields, signature dictionaries, the catalog's /Perms
  and /DSS. A signature names its signer (certificate, /Name, /Location, /ContactInfo), who may
  be the submitter signing with a national e-ID; and rewriting the file breaks it anyway. Cost:
  staff lose the signature as evidence that a document is authentic, and should ask for the
  original through another channel when that matters;
- the metadata inside JPEG images (DCTDecode streams, alone or after other filters, in image
  XObjects at any depth, soft masks, and inline images, which are first turned into XObjects):
  APP1 to APP13, APP15 and COM segments go (EXIF with GPS position and camera serial, XMP, IPTC,
  ICC profiles, MPF and whatever follows the end of the image); APP0 JFIF keeps only its
  density (its thumbnail, which could show the picture before it was cropped, is cut) and APP14
  Adobe only its colour-transform flags. The coded picture is copied byte for byte: nothing is
  decoded or re-encoded. A JPEG whose markers do not parse is refused rather than guessed at.
  PDF readers never apply EXIF orientation, so nothing turns.
- earlier revisions: QPDF writes a complete new file holding only the objects reachable from the
  trailer, so what an incremental update replaced, and objects nothing points to, are gone.

Kept as they are: page content streams, fonts, colour spaces and images other than JPEG, byte
for byte (streams are copied without being decoded and encoded again); a content stream is
rewritten only when it holds an inline JPEG. Encryption is removed when the file opens without
a password (an owner password only restricts printing or copying); a file that needs a user
password is refused as "encrypted".

Left alone, knowingly:
- the document's text and pictures, which may name or show people: that is the report itself;
- JPEG 2000 images (JPXDecode) and their XML, UUID and GeoJP2 boxes, which can carry GPS: QPDF
  cannot decode them and a box walker is not written yet;
- embedded fonts, whose name tables can hold a vendor's or licensee's name, ICC profiles (colour
  spaces, output intents), which can name a device or a calibrated screen;
- bookmarks, page labels, structure-tree alternate texts, form field values, links (URI
  actions), and file specifications' names (/F, /UF) still referenced after the above;
- the appearance of a removed signature ("Digitally signed by ..."), which is drawn content.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from typing import Final

import pikepdf
from pikepdf import Array, Dictionary, Name, Stream

from app.intake.cleaning.documents import (
    PDF_CONTENT_TYPE,
    CleanedDocument,
    DocumentNotCleaned,
    NotCleanedReason,
)

# Removed from every dictionary and stream dictionary, wherever it is (see the module docstring).
_REMOVED_EVERYWHERE: Final = tuple(
    Name(key)
    for key in (
        "/Metadata",
        "/PieceInfo",
        "/LastModified",
        "/AA",
        "/Thumb",
        "/AF",
        "/OPI",
        "/JS",
        "/CreationDate",
        "/ModDate",
    )
)
_REMOVED_FROM_CATALOG: Final = tuple(
    Name(key) for key in ("/OpenAction", "/Collection", "/SpiderInfo", "/Perms", "/DSS")
)
_REMOVED_FROM_NAMES: Final = tuple(
    Name(key) for key in ("/JavaScript", "/EmbeddedFiles", "/AlternatePresentations")
)
_DANGEROUS_ACTIONS: Final = frozenset(
    Name(key)
    for key in (
        "/JavaScript",
        "/Launch",
        "/SubmitForm",
        "/ImportData",
        "/GoToE",
        "/GoToR",
        "/RichMediaExecute",
        "/Rendition",
    )
)
_ACTION_SLOTS: Final = (Name.A, Name.Next)
_MARKUP_IDENTITY: Final = tuple(Name(key) for key in ("/T", "/M", "/NM"))
_WIDGET_IDENTITY: Final = (Name("/M"),)  # a widget's /T is its form field's name: kept
_DROPPED_ANNOTATIONS: Final = frozenset(Name(key) for key in ("/FileAttachment", "/Sound", "/RichMedia"))
_SIGNATURE_TYPES: Final = frozenset(Name(key) for key in ("/Sig", "/DocTimeStamp"))
_DCT_FILTERS: Final = frozenset(Name(key) for key in ("/DCTDecode", "/DCT"))

# JPEG markers (ITU T.81 B.1.1.3).
_JPEG_SOI: Final = b"\xff\xd8"
_JPEG_EOI: Final = b"\xff\xd9"
_APP0: Final = 0xE0
_APP14: Final = 0xEE
_COM: Final = 0xFE
_SOS: Final = 0xDA
_TEM: Final = 0x01
# Segments dropped wherever they stand, before or between scans: APP1-APP13, APP15, COM.
_JPEG_DROPPED: Final = frozenset({*range(0xE1, 0xEE), 0xEF, _COM})
# The next marker after entropy-coded data: 0xFF followed by anything but a stuffed zero, a
# restart marker (which belongs to the scan) or a fill byte.
_JPEG_NEXT_MARKER: Final = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_JFIF_KEPT: Final = 12  # "JFIF\0", version, units, X and Y density; then the thumbnail's size
_ADOBE_KEPT: Final = 12  # "Adobe", version, flags0, flags1, colour transform


def clean_pdf(data: bytes) -> CleanedDocument:
    try:
        pdf = pikepdf.open(io.BytesIO(data))
    except pikepdf.PasswordError:
        raise DocumentNotCleaned(NotCleanedReason.ENCRYPTED) from None
    except pikepdf.PdfError:
        raise DocumentNotCleaned(NotCleanedReason.UNREADABLE) from None
    with pdf:
        catalog = pdf.trailer.get(Name.Root)
        if not isinstance(catalog, Dictionary) or len(pdf.pages) == 0:
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        _clean_trailer(pdf)
        _clean_catalog(catalog)
        for top in list(pdf.objects):
            _clean_object_tree(top)
        _drop_annotations(pdf)
        _externalize_inline_jpegs(pdf)
        for obj in list(pdf.objects):
            if isinstance(obj, Stream):
                _clean_jpeg_stream(pdf, obj)
        out = io.BytesIO()
        pdf.save(
            out,
            deterministic_id=True,
            encryption=False,
            fix_metadata_version=False,
            preserve_pdfa=False,
            stream_decode_level=pikepdf.StreamDecodeLevel.none,
            object_stream_mode=pikepdf.ObjectStreamMode.preserve,
        )
    return CleanedDocument(data=out.getvalue(), content_type=PDF_CONTENT_TYPE)


def _clean_trailer(pdf: pikepdf.Pdf) -> None:
    # /Info, /ID, and anything a producer hung on the trailer. /Size stays: QPDF writes its own
    # value there, but only in place of one that is present.
    for key in list(pdf.trailer.keys()):
        if key not in ("/Root", "/Size"):
            del pdf.trailer[key]


def _clean_catalog(catalog: Dictionary) -> None:
    for key in _REMOVED_FROM_CATALOG:
        if key in catalog:
            del catalog[key]
    names = catalog.get(Name.Names)
    if isinstance(names, Dictionary):
        for key in _REMOVED_FROM_NAMES:
            if key in names:
                del names[key]
    acroform = catalog.get(Name.AcroForm)
    if isinstance(acroform, Dictionary) and Name.XFA in acroform:
        del acroform[Name.XFA]


def _clean_object_tree(top: object) -> None:
    """Clean an indirect object and every direct dictionary and array inside it. Indirect objects
    it points to are cleaned on their own turn (every object in the file gets one), so a cycle of
    references cannot make this loop."""
    if not isinstance(top, (Dictionary, Stream, Array)):
        return
    pending: list[Dictionary | Stream | Array] = [top]
    while pending:
        node = pending.pop()
        children: list[object]
        if isinstance(node, Array):
            children = list(node)
        else:
            _clean_dictionary(node)
            children = [node.get(key) for key in node.keys()]  # noqa: SIM118 - a Stream is not iterable
        pending.extend(
            child for child in children if isinstance(child, (Dictionary, Array)) and not child.is_indirect
        )


def _clean_dictionary(node: Dictionary | Stream) -> None:
    for key in _REMOVED_EVERYWHERE:
        if key in node:
            del node[key]
    for slot in _ACTION_SLOTS:
        _drop_dangerous_actions(node, slot)
    # File specifications lose their content; embedded file streams are emptied as well, in case
    # something other than a file specification points to one.
    for key in (Name.EF, Name.RF):
        if key in node:
            del node[key]
    if isinstance(node, Stream) and node.get(Name.Type) == Name.EmbeddedFile:
        node.write(b"")
        if Name.Params in node:
            del node[Name.Params]
    if node.get(Name.FT) == Name.Sig and Name.V in node:
        del node[Name.V]
    if _is_annotation(node):
        identity = _MARKUP_IDENTITY if node.get(Name.Subtype) != Name.Widget else _WIDGET_IDENTITY
        for key in identity:
            if key in node:
                del node[key]
    if node.get(Name.Type) == Name.Thread and Name.I in node:
        del node[Name.I]  # a thread's information dictionary holds Title, Author, dates
    if _is_dangerous_action(node) or node.get(Name.Type) in _SIGNATURE_TYPES:
        for entry in list(node.keys()):
            del node[entry]


def _drop_dangerous_actions(node: Dictionary | Stream, slot: Name) -> None:
    value = node.get(slot)
    if value is None:
        return
    if isinstance(value, Array):
        kept = [action for action in value if not _is_dangerous_action(action)]
        if len(kept) == len(value):
            return
        if kept:
            node[slot] = Array(kept)
            return
        del node[slot]
    elif _is_dangerous_action(value):
        del node[slot]


def _is_dangerous_action(value: object) -> bool:
    return isinstance(value, Dictionary) and value.get(Name.S) in _DANGEROUS_ACTIONS


def _is_annotation(node: Dictionary | Stream) -> bool:
    # /Type /Annot is optional; every annotation has a /Rect and a /Subtype name, which no XObject
    # (they have /BBox) or other common dictionary has together.
    return (
        not isinstance(node, Stream)
        and Name.Rect in node
        and isinstance(node.get(Name.Subtype), Name)
        and node.get(Name.Type) in (None, Name.Annot)
    )


def _drop_annotations(pdf: pikepdf.Pdf) -> None:
    for page in pdf.pages:
        annotations = page.obj.get(Name.Annots)
        if not isinstance(annotations, Array):
            continue
        kept = [
            annotation
            for annotation in annotations
            if not (
                isinstance(annotation, Dictionary) and annotation.get(Name.Subtype) in _DROPPED_ANNOTATIONS
            )
        ]
        if len(kept) != len(annotations):
            page.obj[Name.Annots] = Array(kept)


# ----------------------------------------------------------------------------------- JPEG streams


def _clean_jpeg_stream(pdf: pikepdf.Pdf, stream: Stream) -> None:
    filters = _as_list(stream.get(Name.Filter))
    if not any(isinstance(name, Name) and name in _DCT_FILTERS for name in filters):
        return
    parameters = _as_list(stream.get(Name.DecodeParms))
    last = filters[-1]
    if not (isinstance(last, Name) and last in _DCT_FILTERS) or any(
        isinstance(name, Name) and name in _DCT_FILTERS for name in filters[:-1]
    ):
        raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)  # DCT must be the last, and only once
    if len(filters) == 1:
        jpeg = stream.read_raw_bytes()
    else:
        # Undo the filters before DCTDecode (Flate, LZW, ASCII85...) with QPDF's own decoders, on a
        # scratch stream that nothing points to (so it is not written).
        scratch = pikepdf.Stream(pdf, stream.read_raw_bytes())
        scratch[Name.Filter] = Array(filters[:-1])
        if parameters:
            scratch[Name.DecodeParms] = Array(parameters[:-1])
        jpeg = scratch.read_bytes(decode_level=pikepdf.StreamDecodeLevel.specialized)
    cleaned = strip_jpeg_metadata(jpeg)
    if len(filters) == 1 and cleaned == jpeg:
        return  # nothing to remove: the stream stays byte for byte
    dct_parameters = parameters[-1] if len(parameters) == len(filters) else None
    stream.write(
        cleaned,
        filter=Name.DCTDecode,
        decode_parms=dct_parameters if isinstance(dct_parameters, Dictionary) else None,
    )


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, Array):
        return list(value)
    return [value]


def strip_jpeg_metadata(data: bytes) -> bytes:
    """The JPEG with its metadata segments removed and its coded picture copied byte for byte.

    Walks every marker segment, before and between scans, and the entropy-coded data of each
    scan, to the end of the image (EOI); what follows the EOI is dropped. Raises
    DocumentNotCleaned("unreadable") on anything that does not parse as JPEG markers: a file that
    does not say where its segments are cannot be trusted to have none left. A file cut off
    inside its last scan keeps what it has (entropy-coded data carries no metadata).
    """
    if not data.startswith(_JPEG_SOI):
        raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
    out = bytearray(_JPEG_SOI)
    position = len(_JPEG_SOI)
    end = len(data)
    while True:
        if position >= end or data[position] != 0xFF:
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        while position < end and data[position] == 0xFF:  # the marker's 0xFF and any fill bytes
            position += 1
        if position >= end:
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        code = data[position]
        position += 1
        if code == 0xD9:  # EOI
            out += _JPEG_EOI
            return bytes(out)
        if code == _TEM:
            out += b"\xff\x01"
            continue
        if code == 0x00 or 0xD0 <= code <= 0xD8 or position + 2 > end:
            # A stuffed zero or restart marker outside a scan, a second SOI, or a cut-off length.
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        length = int.from_bytes(data[position : position + 2], "big")
        if length < 2 or position + length > end:
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        payload = data[position + 2 : position + length]
        position += length
        if code == _APP0:
            if payload.startswith(b"JFIF\x00") and len(payload) >= _JFIF_KEPT + 2:
                out += _segment(_APP0, payload[:_JFIF_KEPT] + b"\x00\x00")  # thumbnail 0 x 0
        elif code == _APP14:
            if payload.startswith(b"Adobe") and len(payload) >= _ADOBE_KEPT:
                out += _segment(_APP14, payload[:_ADOBE_KEPT])
        elif code not in _JPEG_DROPPED:
            out += _segment(code, payload)
        if code == _SOS:
            following = _JPEG_NEXT_MARKER.search(data, position)
            scan_end = following.start() if following is not None else end
            out += data[position:scan_end]
            if following is None:
                return bytes(out)
            position = scan_end


def _segment(code: int, payload: bytes) -> bytes:
    return bytes((0xFF, code)) + (len(payload) + 2).to_bytes(2, "big") + payload


# ---------------------------------------------------------------------------------- inline images


def _externalize_inline_jpegs(pdf: pikepdf.Pdf) -> None:
    """Inline images (BI ... ID ... EI inside a content stream) can be JPEGs too, with their EXIF.
    QPDF can turn them into image XObjects, which the JPEG pass then cleans; that rewrites the
    content streams concerned (same drawing, different bytes), so it is done only when an inline
    JPEG may be there. One that QPDF cannot reach (in a pattern, a Type 3 glyph, an annotation's
    appearance) is refused rather than left."""
    if not any(_may_hold_inline_jpeg(stream) for stream in _content_streams(pdf)):
        return
    for page in pdf.pages:
        page.externalize_inline_images(min_size=0)
    for stream in _content_streams(pdf):
        if _may_hold_inline_jpeg(stream) and _has_inline_jpeg(stream):
            raise DocumentNotCleaned(NotCleanedReason.UNCLEANABLE_PART)


def _content_streams(pdf: pikepdf.Pdf) -> Iterator[Stream]:
    for page in pdf.pages:
        contents = page.obj.get(Name.Contents)
        for stream in _as_list(contents):
            if isinstance(stream, Stream):
                yield stream
    for obj in pdf.objects:
        if isinstance(obj, Stream) and (obj.get(Name.Subtype) == Name.Form or Name.PatternType in obj):
            yield obj
        elif isinstance(obj, Dictionary) and obj.get(Name.Subtype) == Name.Type3:
            glyphs = obj.get(Name.CharProcs)
            if isinstance(glyphs, Dictionary):
                for key in glyphs.keys():  # noqa: SIM118 - typed as str keys only this way
                    glyph = glyphs.get(key)
                    if isinstance(glyph, Stream):
                        yield glyph


def _may_hold_inline_jpeg(stream: Stream) -> bool:
    """A cheap test at C speed: an inline image's ID operator and a JPEG's first bytes."""
    try:
        content = stream.read_bytes()
    except pikepdf.PdfError:
        return False  # a stream nothing can decode draws nothing, inline JPEG or not
    return b"ID" in content and b"\xff\xd8\xff" in content


def _has_inline_jpeg(stream: Stream) -> bool:
    try:
        instructions = pikepdf.parse_content_stream(stream)
    except pikepdf.PdfError:
        return True  # cannot tell: refused
    for instruction in instructions:
        if isinstance(instruction, pikepdf.ContentStreamInlineImage) and any(
            name in ("/DCTDecode", "/DCT") for name in instruction.iimage.filters
        ):
            return True
    return False
