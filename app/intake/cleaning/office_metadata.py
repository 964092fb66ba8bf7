"""Removing identifying metadata from Office Open XML (Word, Excel, PowerPoint, with their macro and
template variants) and OpenDocument (text, spreadsheet, presentation, drawing) files. Runs in the
confined child only (`document_worker`); `documents` gives the threat and the contract.

Both formats are ZIP packages of XML parts. The package is rewritten into a new ZIP, part by part
in the same order: every entry dated 1980-01-01 00:00:00 (the earliest a ZIP can say; the
submitted dates are when the author last saved, in their time zone), with no extra fields (they
carry Unix owners and exact times), no comment, no Unix attributes; ODF's `mimetype` first and
stored, as the format requires. XML parts are parsed by lxml with entities, DTDs and the network
off, and refused if they declare a DOCTYPE; namespace declarations and prefixes are kept as they
were, since Word's `mc:Ignorable` names prefixes. XML comments are dropped from the parts that
are rewritten.

Zip bombs: the central directory's size and entry count are read from its end record before
`zipfile` builds anything; then at most `MAX_MEMBERS` entries, `MAX_UNPACKED_BYTES` declared in
all (embedded packages included), and no entry larger than `_RATIO_FLOOR` that claims to expand
more than `MAX_RATIO` times. `zipfile` never inflates past an entry's declared size, so what was
counted is what can come out. Only stored and deflated entries are read (no bzip2 or LZMA
decoder is offered submitter bytes), encrypted entries are refused as "encrypted".

Removed, Office Open XML:
- core, extended and custom properties (docProps/core.xml, app.xml, custom.xml, wherever the
  package relationships put them): author, last modified by, company, manager, template, dates,
  editing time, sensitivity labels, every custom property. The parts stay, empty, so relationships
  and content types stay valid;
- Word: on every element of every XML part under word/: w:author (blanked: it is required),
  w:initials, w:date, w16du:dateUtc and every w:rsid* attribute; people.xml's author, userId,
  providerId (blanked); in settings: w:rsids, w:attachedTemplate (and its relationship, whose
  target is a path such as C:\\Users\\name\\...\\Normal.dotm), w14:docId, w15:docId, w:docVars,
  w:mailMerge (and its data source relationships, paths again);
- Excel: comment authors (xl/comments*.xml), persons (displayName, userId, providerId), threaded
  comments' dates (dT), the workbook's x15ac:absPath (the folder it was saved in) and
  xr:revisionPtr (document ids), fileSharing's userName, pivot caches' refreshedBy and refresh
  dates, shared-workbook revision user names (and dates, made fixed);
- PowerPoint: comment authors (commentAuthors.xml and authors.xml: name, initials, userId,
  providerId, blanked), comment dates (dt removed, created made fixed);
- digital signatures (_xmlsignatures/, with their relationship and content type): they name and
  certify the signer, and the rewrite breaks them anyway.
Removed, OpenDocument:
- meta.xml, rebuilt as an empty office:meta (initial creator, creator, dates, editing cycles and
  duration, generator, printed by, statistics, user-defined fields); in content.xml and
  styles.xml (of the document and of every embedded object), dc:creator blanked and dc:date made
  fixed (annotations, tracked changes: office:change-info needs both) and meta:creator-initials
  removed; in settings.xml the config items naming the printer, its setup blob, fax and mail-merge
  data sources; document and macro signatures (META-INF/*signatures.xml).
Pictures, in either format: every part whose first bytes are a JPEG, PNG or WebP is re-encoded
from its pixels by `clean_image` (EXIF, GPS, XMP, ICC all go; orientation is applied), with a
child-wide `ImageMemoryBudget` of half the child's address space. When that fails (too many
pixels, too little memory, a decoder refusing a damaged file), a JPEG falls back to
`strip_jpeg_metadata` (its metadata segments cut, the picture copied) and a PNG to a chunk filter
that keeps only the chunks that draw it; a WebP is refused. A GIF is not re-encoded (Pillow would
make it a PNG of its first frame, under a name and content type that say GIF, and animated GIFs
in slides would freeze): its blocks are filtered instead, keeping image data, colour tables,
graphic control and looping extensions, and dropping comments, plain text and every other
application extension (XMP). A part that is a TIFF, HEIF/AVIF or JPEG 2000 picture (any of which
can carry GPS, none of which is cleaned), or any other part holding an EXIF block ("Exif\\0\\0",
e.g. a photo inside an OLE package object), makes the document refused ("has a part that cannot
be cleaned"): no picture leaves with its EXIF. An embedded Office or OpenDocument package (a chart's
workbook inside a .docx, a document inside a slide) is cleaned the same way, two levels deep at
most; any other ZIP inside is refused likewise.

Left alone, knowingly:
- macro projects (vbaProject.bin) and OLE objects (oleObject*.bin, .xls/.doc inside), which are
  compound files with their own summary information (author, dates): there is no parser for them
  here. They are kept as they are, but a document carrying an EXIF block in one is refused;
- the text itself and what it shows: names in the body, headers, comment text (Excel writes the
  author's name at the start of a comment), fields that display the author, hyperlinks (including
  file: links to the author's disk), linked (not embedded) pictures' paths, external workbook
  links, custom XML data parts (customXml/, e.g. SharePoint properties bound to content controls);
- identifiers that are not names: w14:paraId/textId, xr:uid, durable comment ids;
- fonts embedded in the document, SVG, EMF and WMF pictures, videos and sounds (an MP4 from a
  phone can carry its GPS position);
- the remaining document settings (zoom, proofing state, compatibility) and styles.
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from lxml import etree  # type: ignore[import-untyped]  # lxml ships no type hints; types-lxml would

from app.intake.cleaning.documents import (
    DOCUMENT_CONTENT_TYPES,
    CleanedDocument,
    DocumentNotCleaned,
    NotCleanedReason,
)
from app.intake.cleaning.errors import ImageCleaningBusy, ImageTooLarge, UnreadableImage
from app.intake.cleaning.formats import GIF, HARD_PIXEL_CEILING, JPEG, PNG, SNIFF_BYTES, sniff_image
from app.intake.cleaning.memory_budget import ImageMemoryBudget
from app.intake.cleaning.pdf_metadata import strip_jpeg_metadata
from app.intake.cleaning.reencoding import clean_image

# lxml elements, untyped (see the import).
_Element = Any

MAX_MEMBERS: Final = 10_000
MAX_UNPACKED_BYTES: Final = 512 * 1024 * 1024
# Deflate expands at most ~1,032 times; XML of repeated rows reaches 100 times, little more.
MAX_RATIO: Final = 200
_RATIO_FLOOR: Final = 1024 * 1024
# Tens of thousands of entries' worth of names; a real package's is a few kilobytes.
MAX_CENTRAL_DIRECTORY_BYTES: Final = 4 * 1024 * 1024
MAX_NESTING: Final = 2
_FIXED_ZIP_TIME: Final = (1980, 1, 1, 0, 0, 0)
_FIXED_XML_TIME: Final = "1980-01-01T00:00:00"
_MAX_MIMETYPE_BYTES: Final = 128
# MS-DOS attributes: a directory, or an ordinary ("archive") file. Never zero: zipfile would put
# Unix permissions (0o600) in its place.
_MSDOS_DIRECTORY: Final = 0x10
_MSDOS_FILE: Final = 0x20

_EOCD: Final = b"PK\x05\x06"
_EOCD_SIZE: Final = 22
_ZIP64_LOCATOR: Final = b"PK\x06\x07"
_ZIP64_LOCATOR_SIZE: Final = 20
_ZIP64_EOCD: Final = b"PK\x06\x06"
_ZIP64_EOCD_SIZE: Final = 56

_MAIN_OOXML_TYPES: Final = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": (
        "word",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.template.main+xml": (
        "word",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.template",
    ),
    "application/vnd.ms-word.document.macroenabled.main+xml": (
        "word",
        "application/vnd.ms-word.document.macroEnabled.12",
    ),
    "application/vnd.ms-word.template.macroenabledtemplate.main+xml": (
        "word",
        "application/vnd.ms-word.template.macroEnabled.12",
    ),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml": (
        "sheet",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.template.main+xml": (
        "sheet",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.template",
    ),
    "application/vnd.ms-excel.sheet.macroenabled.main+xml": (
        "sheet",
        "application/vnd.ms-excel.sheet.macroEnabled.12",
    ),
    "application/vnd.ms-excel.template.macroenabled.main+xml": (
        "sheet",
        "application/vnd.ms-excel.template.macroEnabled.12",
    ),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": (
        "presentation",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    "application/vnd.openxmlformats-officedocument.presentationml.slideshow.main+xml": (
        "presentation",
        "application/vnd.openxmlformats-officedocument.presentationml.slideshow",
    ),
    "application/vnd.openxmlformats-officedocument.presentationml.template.main+xml": (
        "presentation",
        "application/vnd.openxmlformats-officedocument.presentationml.template",
    ),
    "application/vnd.ms-powerpoint.presentation.macroenabled.main+xml": (
        "presentation",
        "application/vnd.ms-powerpoint.presentation.macroEnabled.12",
    ),
    "application/vnd.ms-powerpoint.slideshow.macroenabled.main+xml": (
        "presentation",
        "application/vnd.ms-powerpoint.slideshow.macroEnabled.12",
    ),
    "application/vnd.ms-powerpoint.template.macroenabled.main+xml": (
        "presentation",
        "application/vnd.ms-powerpoint.template.macroEnabled.12",
    ),
}
ODF_CONTENT_TYPES: Final = frozenset(
    kind for kind in DOCUMENT_CONTENT_TYPES if kind.startswith("application/vnd.oasis.opendocument.")
)

# Relationship types, matched by their last segment: transitional and strict OOXML differ only in
# the prefix.
_CORE_PROPERTIES: Final = "/core-properties"
_EXTENDED_PROPERTIES: Final = "/extended-properties"
_CUSTOM_PROPERTIES: Final = "/custom-properties"
_OFFICE_DOCUMENT: Final = "/officedocument"
_WORD_SETTINGS_RELATIONSHIPS_DROPPED: Final = (
    "/attachedtemplate",
    "/mailmergesource",
    "/mailmergeheadersource",
)

_EMPTY_PROPERTIES: Final = {
    _CORE_PROPERTIES: (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        b'<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"'
        b' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/"'
        b' xmlns:dcmitype="http://purl.org/dc/dcmitype/"'
        b' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"/>'
    ),
    _EXTENDED_PROPERTIES: (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        b'<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties"'
        b' xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes"/>'
    ),
    _CUSTOM_PROPERTIES: (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        b'<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/custom-properties"'
        b' xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes"/>'
    ),
}
_DEFAULT_PROPERTY_PARTS: Final = {
    "docprops/core.xml": _CORE_PROPERTIES,
    "docprops/app.xml": _EXTENDED_PROPERTIES,
    "docprops/custom.xml": _CUSTOM_PROPERTIES,
}

_WORD_NAMESPACES: Final = frozenset(
    {
        "http://schemas.openxmlformats.org/wordprocessingml/2006/main",
        "http://purl.oclc.org/ooxml/wordprocessingml/main",
    }
)
_MC_NAMESPACE: Final = "http://schemas.openxmlformats.org/markup-compatibility/2006"
_WORD_BLANKED: Final = frozenset({"author", "userId", "providerId"})
_WORD_REMOVED: Final = frozenset({"initials", "date", "dateUtc"})
_WORD_SETTINGS_REMOVED: Final = frozenset({"rsids", "attachedTemplate", "docId", "docVars", "mailMerge"})

_ODF_DC: Final = "http://purl.org/dc/elements/1.1/"
_ODF_META: Final = "urn:oasis:names:tc:opendocument:xmlns:meta:1.0"
_ODF_OFFICE: Final = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"
_ODF_CONFIG: Final = "urn:oasis:names:tc:opendocument:xmlns:config:1.0"
_ODF_PRINTER_SETTINGS: Final = frozenset(
    {
        "PrinterName",
        "PrinterSetup",
        "PrinterPaperFromSetup",
        "PrintFaxName",
        "CurrentDatabaseDataSource",
        "CurrentDatabaseCommand",
        "CurrentDatabaseCommandType",
        # LibreOffice's editing-session ids, as Word's rsids: they link copies of a document.
        "Rsid",
        "RsidRoot",
    }
)
# Word, Excel and PowerPoint keep the last printer's DEVMODE in these parts.
_PRINTER_SETTINGS_PART: Final = re.compile(r"(?:word|xl|ppt)/printersettings/printersettings[0-9]*\.bin")
_DEVMODE_NAME_BYTES: Final = 64
# User and password parts of an ODBC/OLE DB connection string.
_CREDENTIALS: Final = re.compile(r"(?i)\b(?:user id|uid|user|password|pwd)\s*=\s*[^;]*;?")
# LibreOffice writes an rsid on paragraphs and text styles (officeooo:rsid, :paragraph-rsid).
_LIBREOFFICE_NS: Final = "http://openoffice.org/2009/office"
_ODF_SIGNATURES: Final = frozenset({"meta-inf/documentsignatures.xml", "meta-inf/macrosignatures.xml"})

# Picture formats that can carry EXIF or GPS and that nothing here cleans.
_TIFF_MAGIC: Final = (b"II*\x00", b"MM\x00*")
_JPEG2000_MAGIC: Final = (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")
_HEIF_BRANDS: Final = frozenset(b"heic heix heim heis hevc hevx hevm hevs mif1 msf1 avif avis".split())
_EXIF_HEADER: Final = b"Exif\x00\x00"

_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
# The chunks that draw a PNG (and an APNG); text, EXIF, ICC profiles, times and private chunks go.
_PNG_KEPT: Final = frozenset(
    {b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"bKGD", b"pHYs"}
    | {b"acTL", b"fcTL", b"fdAT"}
)
_GIF_IMAGE: Final = 0x2C
_GIF_EXTENSION: Final = 0x21
_GIF_TRAILER: Final = 0x3B
_GIF_GRAPHIC_CONTROL: Final = 0xF9
_GIF_APPLICATION: Final = 0xFF
_GIF_LOOPING: Final = (b"NETSCAPE2.0", b"ANIMEXTS1.0")


def clean_package(data: bytes, *, memory_bytes: int) -> CleanedDocument:
    context = _Context(images=ImageMemoryBudget(max(memory_bytes // 2, 1), wait_seconds=0))
    content_type, cleaned = _clean_zip(data, context, depth=0)
    return CleanedDocument(data=cleaned, content_type=content_type)


@dataclass(slots=True)
class _Context:
    """What one document may use, across its embedded packages."""

    images: ImageMemoryBudget
    members: int = 0
    unpacked_bytes: int = 0


# ------------------------------------------------------------------------------------ the package


def _clean_zip(data: bytes, context: _Context, *, depth: int) -> tuple[str, bytes]:
    _check_central_directory(data)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()
        _check_members(members, context)
        package = _recognise(archive)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as cleaned:
            if isinstance(package, _OpenDocument):
                cleaned.writestr(_entry("mimetype", stored=True), package.content_type.encode("ascii"))
            for member in members:
                if isinstance(package, _OpenDocument) and member.filename.casefold() == "mimetype":
                    continue
                if member.is_dir():
                    cleaned.writestr(_entry(member.filename, stored=True, directory=True), b"")
                    continue
                content = package.clean_part(member.filename, archive.read(member), context, depth)
                if content is not None:
                    cleaned.writestr(_entry(member.filename), content)
    return package.content_type, out.getvalue()


def _entry(name: str, *, stored: bool = False, directory: bool = False) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
    entry.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    entry.create_system = 0  # MS-DOS: the external attributes hold no Unix mode or owner
    entry.external_attr = _MSDOS_DIRECTORY if directory else _MSDOS_FILE
    return entry


def _check_central_directory(data: bytes) -> None:
    """The central directory's entry count and size, from its end record, before `zipfile` reads
    it into objects (finding the record as `zipfile` does: at the very end, else the last one
    within a comment's reach)."""
    if data[-_EOCD_SIZE : -_EOCD_SIZE + 4] == _EOCD and data[-2:] == b"\x00\x00":
        start = len(data) - _EOCD_SIZE
    else:
        start = data.rfind(_EOCD, max(len(data) - _EOCD_SIZE - 0xFFFF, 0))
    if start < 0 or start + _EOCD_SIZE > len(data):
        raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
    entries = int.from_bytes(data[start + 10 : start + 12], "little")
    size = int.from_bytes(data[start + 12 : start + 16], "little")
    if entries == 0xFFFF or size == 0xFFFFFFFF:
        locator = start - _ZIP64_LOCATOR_SIZE
        if locator < 0 or data[locator : locator + 4] != _ZIP64_LOCATOR:
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        record = int.from_bytes(data[locator + 8 : locator + 16], "little")
        if record + _ZIP64_EOCD_SIZE > len(data) or data[record : record + 4] != _ZIP64_EOCD:
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        entries = int.from_bytes(data[record + 32 : record + 40], "little")
        size = int.from_bytes(data[record + 40 : record + 48], "little")
    if entries > MAX_MEMBERS or size > MAX_CENTRAL_DIRECTORY_BYTES:
        raise DocumentNotCleaned(NotCleanedReason.UNPACKS_TOO_LARGE)


def _check_members(members: list[zipfile.ZipInfo], context: _Context) -> None:
    context.members += len(members)
    if context.members > MAX_MEMBERS:
        raise DocumentNotCleaned(NotCleanedReason.UNPACKS_TOO_LARGE)
    seen: set[str] = set()
    for member in members:
        # Two entries of one name (OPC part names ignore case) are read differently by different
        # programs: the one cleaned might not be the one shown.
        folded = member.filename.casefold()
        if folded in seen:
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        seen.add(folded)
        if member.flag_bits & 0x1:
            raise DocumentNotCleaned(NotCleanedReason.ENCRYPTED)
        if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        context.unpacked_bytes += member.file_size
        if context.unpacked_bytes > MAX_UNPACKED_BYTES or (
            member.file_size > _RATIO_FLOOR and member.file_size > MAX_RATIO * member.compress_size
        ):
            raise DocumentNotCleaned(NotCleanedReason.UNPACKS_TOO_LARGE)


def _recognise(archive: zipfile.ZipFile) -> _OpenDocument | _OfficeOpenXml:
    names = {member.filename.casefold(): member.filename for member in archive.infolist()}
    if "mimetype" in names:
        mimetype = archive.getinfo(names["mimetype"])
        declared = archive.read(mimetype) if mimetype.file_size <= _MAX_MIMETYPE_BYTES else b""
        content_type = declared.decode("ascii", errors="replace").strip()
        if content_type not in ODF_CONTENT_TYPES:
            raise DocumentNotCleaned(NotCleanedReason.NOT_OFFICE)
        manifest = names.get("meta-inf/manifest.xml")
        if manifest is not None and any(
            _local(element.tag) == "encryption-data" for element in _elements(_parse(archive.read(manifest)))
        ):
            raise DocumentNotCleaned(NotCleanedReason.ENCRYPTED)
        return _OpenDocument(content_type)
    types_name = names.get("[content_types].xml")
    package_relationships = names.get("_rels/.rels")
    if types_name is None or package_relationships is None:
        raise DocumentNotCleaned(NotCleanedReason.NOT_OFFICE)
    relationships = _relationships(_parse(archive.read(package_relationships)))
    main = next((target for kind, target in relationships if kind.endswith(_OFFICE_DOCUMENT)), None)
    main_type = _part_content_type(_parse(archive.read(types_name)), main) if main else None
    if main is None or main_type not in _MAIN_OOXML_TYPES:
        raise DocumentNotCleaned(NotCleanedReason.NOT_OFFICE)
    family, content_type = _MAIN_OOXML_TYPES[main_type]
    properties = dict(_DEFAULT_PROPERTY_PARTS)
    for kind, target in relationships:
        for suffix in _EMPTY_PROPERTIES:
            if kind.endswith(suffix):
                properties[target] = suffix
    signed = any(name.startswith("_xmlsignatures/") for name in names)
    return _OfficeOpenXml(content_type, family, main, properties, signed=signed)


def _relationships(root: _Element) -> list[tuple[str, str]]:
    """(type in lower case, target as a part name in lower case) of each package relationship."""
    found = []
    for element in _elements(root):
        if _local(element.tag) == "Relationship" and element.get("TargetMode") != "External":
            target = posixpath.normpath("/" + element.get("Target", "")).lstrip("/").casefold()
            found.append((element.get("Type", "").casefold(), target))
    return found


def _part_content_type(types: _Element, part: str) -> str | None:
    extension = posixpath.splitext(part)[1].lstrip(".")
    by_default = None
    for element in _elements(types):
        if _local(element.tag) == "Override" and element.get("PartName", "").lstrip("/").casefold() == part:
            return str(element.get("ContentType", "")).casefold()
        if _local(element.tag) == "Default" and element.get("Extension", "").casefold() == extension:
            by_default = str(element.get("ContentType", "")).casefold()
    return by_default


class _OpenDocument:
    def __init__(self, content_type: str) -> None:
        self.content_type = content_type

    def clean_part(self, name: str, content: bytes, context: _Context, depth: int) -> bytes | None:
        folded = name.casefold()
        if folded in _ODF_SIGNATURES:
            return None
        base = posixpath.basename(folded)
        if base == "meta.xml":
            return _rewrite(content, _empty_odf_meta)
        if base in ("content.xml", "styles.xml"):
            return _rewrite(content, _clean_odf_body)
        if base == "settings.xml":
            return _rewrite(content, _clean_odf_settings)
        return _clean_other_part(content, context, depth)


class _OfficeOpenXml:
    def __init__(
        self, content_type: str, family: str, main: str, properties: dict[str, str], *, signed: bool
    ) -> None:
        self.content_type = content_type
        self.family = family
        self.main = main
        folder = posixpath.dirname(main)
        self.folder = folder + "/" if folder else ""  # the main part's folder, e.g. word/
        self.properties = properties
        self.signed = signed

    def clean_part(self, name: str, content: bytes, context: _Context, depth: int) -> bytes | None:
        folded = name.casefold()
        if folded in self.properties:
            return _EMPTY_PROPERTIES[self.properties[folded]]
        if folded.startswith("_xmlsignatures/"):
            return None
        if self.signed and folded == "[content_types].xml":
            return _rewrite(content, _unlist_signatures)
        if self.signed and folded == "_rels/.rels":
            return _rewrite(content, _unrelate_signatures)
        if _PRINTER_SETTINGS_PART.fullmatch(folded):
            return _without_printer_name(content)
        rule = self._rule(folded)
        if rule is not None:
            return _rewrite(content, rule)
        return _clean_other_part(content, context, depth)

    def _rule(self, folded: str) -> Callable[[_Element], None] | None:
        if not folded.startswith(self.folder):
            return None
        inside = folded[len(self.folder) :]
        base = posixpath.basename(inside)
        if self.family == "word":
            if folded.endswith(".rels") and base == "settings.xml.rels":
                return _drop_word_settings_relationships
            if folded.endswith(".xml"):
                return _clean_word_settings if base == "settings.xml" else _clean_word_part
        elif self.family == "sheet":
            return _sheet_rule(inside, base, main=folded == self.main)
        elif self.family == "presentation":
            return _presentation_rule(inside, base)
        return None


def _sheet_rule(inside: str, base: str, *, main: bool) -> Callable[[_Element], None] | None:
    if main:
        return _clean_workbook
    if "/" not in inside and base.startswith("comments") and base.endswith(".xml"):
        return _blank_texts({"author"})
    if inside.startswith("persons/") and base.endswith(".xml"):
        return _set_attributes({"person"}, {"displayName": "", "userId": "", "providerId": ""})
    if inside.startswith("threadedcomments/") and base.endswith(".xml"):
        return _remove_attributes({"threadedComment"}, {"dT"})
    if inside.startswith("pivotcache/") and base.startswith("pivotcachedefinition") and base.endswith(".xml"):
        return _remove_attributes(
            {"pivotCacheDefinition"}, {"refreshedBy", "refreshedDate", "refreshedDateIso"}
        )
    if inside == "connections.xml":
        return _clean_connections
    if inside == "revisions/usernames.xml":
        return _set_attributes({"userInfo"}, {"name": ""})
    if inside == "revisions/revisionheaders.xml":
        return _set_attributes({"header"}, {"userName": "", "dateTime": _FIXED_XML_TIME})
    return None


def _clean_connections(root: _Element) -> None:
    """Excel's data connections: the .odc file's path (a user folder) and the credentials a
    connection string may carry."""
    for element in _elements(root):
        if _local(element.tag) == "connection":
            for name in ("odcFile", "sourceFile"):
                element.attrib.pop(name, None)
        value = element.get("connection")
        if value is not None:
            element.set("connection", _CREDENTIALS.sub("", value))


def _without_printer_name(content: bytes) -> bytes:
    """A printer settings part is a Windows DEVMODE: its first 64 bytes are the printer's name
    (often a person's, or an office's), overwritten with zeros; the rest (paper, orientation) is
    kept, so that Office opens the file without a repair."""
    return (
        bytes(_DEVMODE_NAME_BYTES) + content[_DEVMODE_NAME_BYTES:]
        if len(content) >= _DEVMODE_NAME_BYTES
        else b""
    )


def _presentation_rule(inside: str, base: str) -> Callable[[_Element], None] | None:
    if inside == "commentauthors.xml":
        return _set_attributes({"cmAuthor"}, {"name": "", "initials": ""})
    if inside == "authors.xml":
        return _set_attributes({"author"}, {"name": "", "initials": "", "userId": "", "providerId": ""})
    if inside.startswith("comments/") and base.endswith(".xml"):

        def clean_comments(root: _Element) -> None:
            _remove_attributes({"cm"}, {"dt"})(root)
            _set_attributes({"cm", "reply"}, {"created": _FIXED_XML_TIME})(root)

        return clean_comments
    return None


# ------------------------------------------------------------------------------------- XML parts


def _parse(content: bytes) -> _Element:
    parser = etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        huge_tree=False,
        load_dtd=False,
        dtd_validation=False,
        remove_comments=True,
        collect_ids=False,
    )
    try:
        root = etree.fromstring(content, parser)
    except etree.XMLSyntaxError:
        raise DocumentNotCleaned(NotCleanedReason.UNREADABLE) from None
    # Package parts have no DOCTYPE; one that declares entities is built to be expanded.
    if root is None or root.getroottree().docinfo.doctype:
        raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
    return root


def _rewrite(content: bytes, clean: Callable[[_Element], None]) -> bytes:
    root = _parse(content)
    clean(root)
    tree = root.getroottree()
    serialised: bytes = etree.tostring(
        tree, xml_declaration=True, encoding="UTF-8", standalone=True if tree.docinfo.standalone else None
    )
    return serialised


def _elements(root: _Element) -> Iterable[_Element]:
    """Elements only (processing instructions have no string tag)."""
    return (element for element in root.iter() if isinstance(element.tag, str))


def _local(name: str) -> str:
    return name.rpartition("}")[2]


def _namespace(name: str) -> str:
    return name[1:].partition("}")[0] if name.startswith("{") else ""


def _remove_elements(root: _Element, wanted: Callable[[_Element], bool]) -> None:
    for element in [element for element in _elements(root) if wanted(element)]:
        parent = element.getparent()
        if parent is not None:
            parent.remove(element)


def _blank_texts(locals_: set[str]) -> Callable[[_Element], None]:
    def clean(root: _Element) -> None:
        for element in _elements(root):
            if _local(element.tag) in locals_:
                for child in list(element):
                    element.remove(child)
                element.text = ""

    return clean


def _set_attributes(elements: set[str], values: dict[str, str]) -> Callable[[_Element], None]:
    """Gives the attributes named in `values` that fixed value where they are present (an absent
    optional attribute stays absent)."""

    def clean(root: _Element) -> None:
        for element in _elements(root):
            if _local(element.tag) not in elements:
                continue
            for attribute in list(element.attrib):
                if _local(attribute) in values:
                    element.set(attribute, values[_local(attribute)])

    return clean


def _remove_attributes(elements: set[str], names: set[str]) -> Callable[[_Element], None]:
    def clean(root: _Element) -> None:
        for element in _elements(root):
            if _local(element.tag) in elements:
                for attribute in list(element.attrib):
                    if _local(attribute) in names:
                        del element.attrib[attribute]

    return clean


def _clean_word_part(root: _Element) -> None:
    for element in _elements(root):
        for attribute in list(element.attrib):
            local = _local(attribute)
            if local in _WORD_BLANKED:
                element.set(attribute, "")
            elif local in _WORD_REMOVED or (
                local.startswith("rsid") and _namespace(attribute) in _WORD_NAMESPACES
            ):
                del element.attrib[attribute]


def _clean_word_settings(root: _Element) -> None:
    _clean_word_part(root)
    _remove_elements(
        root,
        lambda element: element.getparent() is root and _local(element.tag) in _WORD_SETTINGS_REMOVED,
    )


def _drop_word_settings_relationships(root: _Element) -> None:
    _remove_elements(
        root,
        lambda element: (
            _local(element.tag) == "Relationship"
            and element.get("Type", "").casefold().endswith(_WORD_SETTINGS_RELATIONSHIPS_DROPPED)
        ),
    )


def _clean_workbook(root: _Element) -> None:
    _remove_elements(root, lambda element: _local(element.tag) in ("absPath", "revisionPtr"))
    # x15ac:absPath sits in an mc:AlternateContent/mc:Choice of its own: drop the emptied shell.
    _remove_elements(
        root,
        lambda element: (
            _namespace(element.tag) == _MC_NAMESPACE
            and _local(element.tag) == "AlternateContent"
            and all(
                len(choice) == 0
                for choice in element
                if isinstance(choice.tag, str) and _local(choice.tag) == "Choice"
            )
        ),
    )
    _remove_attributes({"fileSharing"}, {"userName"})(root)


def _unlist_signatures(root: _Element) -> None:
    _remove_elements(
        root,
        lambda element: (
            _local(element.tag) == "Override"
            and element.get("PartName", "").lstrip("/").casefold().startswith("_xmlsignatures/")
        ),
    )


def _unrelate_signatures(root: _Element) -> None:
    _remove_elements(
        root,
        lambda element: (
            _local(element.tag) == "Relationship"
            and element.get("Target", "").lstrip("/").casefold().startswith("_xmlsignatures/")
        ),
    )


def _empty_odf_meta(root: _Element) -> None:
    if _namespace(root.tag) != _ODF_OFFICE or _local(root.tag) != "document-meta":
        raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
    for child in list(root):
        root.remove(child)
    root.text = None
    etree.SubElement(root, f"{{{_ODF_OFFICE}}}meta")


def _clean_odf_body(root: _Element) -> None:
    _remove_elements(root, lambda element: element.tag == f"{{{_ODF_META}}}creator-initials")
    for element in _elements(root):
        for name in [name for name in element.attrib if _namespace(name) == _LIBREOFFICE_NS]:
            if _local(name).endswith("rsid"):
                del element.attrib[name]
        if element.tag == f"{{{_ODF_DC}}}creator":
            _replace_text(element, "")
        elif element.tag == f"{{{_ODF_DC}}}date":
            _replace_text(element, _FIXED_XML_TIME)


def _replace_text(element: _Element, text: str) -> None:
    for child in list(element):
        element.remove(child)
    element.text = text


def _clean_odf_settings(root: _Element) -> None:
    _remove_elements(
        root,
        lambda element: (
            element.tag == f"{{{_ODF_CONFIG}}}config-item"
            and element.get(f"{{{_ODF_CONFIG}}}name") in _ODF_PRINTER_SETTINGS
        ),
    )


# ------------------------------------------------------------------------- pictures and the rest


def _clean_other_part(content: bytes, context: _Context, depth: int) -> bytes:
    head = content[:SNIFF_BYTES]
    picture = sniff_image(head)
    if picture is not None:
        return _clean_picture(content, picture, context)
    if head.startswith(b"PK\x03\x04"):
        if depth >= MAX_NESTING:
            raise DocumentNotCleaned(NotCleanedReason.UNCLEANABLE_PART)
        try:
            return _clean_zip(content, context, depth=depth + 1)[1]
        except DocumentNotCleaned as refused:
            if refused.reason == NotCleanedReason.NOT_OFFICE:
                raise DocumentNotCleaned(NotCleanedReason.UNCLEANABLE_PART) from None
            raise
    if _is_uncleanable_picture(head) or _EXIF_HEADER in content:
        raise DocumentNotCleaned(NotCleanedReason.UNCLEANABLE_PART)
    return content


def _is_uncleanable_picture(head: bytes) -> bool:
    return (
        head.startswith(_TIFF_MAGIC)
        or head.startswith(_JPEG2000_MAGIC)
        or (head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS)
    )


def _clean_picture(content: bytes, picture: str, context: _Context) -> bytes:
    if picture == GIF:
        return gif_without_metadata(content)
    try:
        with context.images.reservation() as memory:
            cleaned = clean_image(content, max_pixels=HARD_PIXEL_CEILING, memory=memory)
        if cleaned.content_type == picture:
            return cleaned.data
    except (ImageTooLarge, ImageCleaningBusy, UnreadableImage):
        pass
    if picture == JPEG:
        return strip_jpeg_metadata(content)
    if picture == PNG:
        return png_without_metadata(content)
    raise DocumentNotCleaned(NotCleanedReason.UNCLEANABLE_PART)


def png_without_metadata(data: bytes) -> bytes:
    """The PNG's drawing chunks, byte for byte, up to IEND; anything malformed is refused."""
    if not data.startswith(_PNG_SIGNATURE):
        raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
    out = bytearray(_PNG_SIGNATURE)
    position = len(_PNG_SIGNATURE)
    while True:
        if position + 12 > len(data):
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        length = int.from_bytes(data[position : position + 4], "big")
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if end > len(data):
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        if kind in _PNG_KEPT:
            out += data[position:end]
        position = end
        if kind == b"IEND":
            return bytes(out)


def gif_without_metadata(data: bytes) -> bytes:
    """The GIF's header, colour tables, images, graphic control and looping extensions, byte for
    byte, up to its trailer; comments, plain text and other application extensions (XMP) go."""
    if len(data) < 13 or data[:6] not in (b"GIF87a", b"GIF89a"):
        raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
    position = 13 + _colour_table_bytes(data[10])
    out = bytearray(data[:position])
    while True:
        if position >= len(data):
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        block = data[position]
        if block == _GIF_TRAILER:
            out.append(_GIF_TRAILER)
            return bytes(out)
        if block == _GIF_IMAGE:
            if position + 11 > len(data):
                raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
            # Descriptor (10 bytes), local colour table, LZW minimum code size, then sub-blocks.
            end = _after_sub_blocks(data, position + 10 + _colour_table_bytes(data[position + 9]) + 1)
            out += data[position:end]
        elif block == _GIF_EXTENSION:
            if position + 2 >= len(data):
                raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
            label = data[position + 1]
            end = _after_sub_blocks(data, position + 2)
            application = data[position + 3 : position + 14] if data[position + 2] == 11 else b""
            if label == _GIF_GRAPHIC_CONTROL or (label == _GIF_APPLICATION and application in _GIF_LOOPING):
                out += data[position:end]
        else:
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        position = end


def _colour_table_bytes(flags: int) -> int:
    return 3 << ((flags & 0x07) + 1) if flags & 0x80 else 0


def _after_sub_blocks(data: bytes, position: int) -> int:
    while True:
        if position >= len(data):
            raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
        size = data[position]
        position += 1 + size
        if size == 0:
            return position
