"""Metadata removal from submitted PDF, Office and OpenDocument files (app.intake.cleaning.documents).

Every test goes through `clean_document`, so through the real child process. Every fixture is
built here (pikepdf for PDFs, hand-written XML parts for the packages, Pillow for the photos), and
each test first checks that its fixture carries what the test claims is removed: a test whose
input had no canary would pass for the wrong reason.
"""

from __future__ import annotations

import io
import os
import signal
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pikepdf
import pytest
from lxml import etree  # type: ignore[import-untyped]
from pikepdf import Array, Dictionary, Name, String
from PIL import ExifTags, Image, ImageChops

from app.intake.cleaning import documents
from app.intake.cleaning.documents import (
    DOCUMENT_CONTENT_TYPES,
    SNIFF_DOCUMENT_BYTES,
    CleanedDocument,
    DocumentKind,
    DocumentNotCleaned,
    clean_document,
    sniff_document,
)

CANARY = "Canary Authorname"
CAMERA = "CanaryCam"
# Anything of the submitter's that must not survive, in the forms it is written in.
CANARIES = (CANARY.encode(), CAMERA.encode(), b"CanaryUser", b"Canary")
GPS_LATITUDE = (55.0, 45.0, 21.0)
MB = 1024 * 1024
ROOMY = {"max_output_bytes": 64 * MB, "seconds": 60.0, "memory_bytes": 1024 * MB}
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
ODT = "application/vnd.oasis.opendocument.text"
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
OFFICE = "application/vnd.openxmlformats-officedocument."


def clean(data: bytes, kind: DocumentKind, **limits: float) -> CleanedDocument:
    return clean_document(data, kind, **{**ROOMY, **limits})  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- photos


def gradient(size: tuple[int, int] = (64, 48)) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size)
    image.putdata([(x * 255 // width, y * 255 // height, 128) for y in range(height) for x in range(width)])
    return image


def gps_exif() -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = CAMERA
    exif[ExifTags.Base.Artist] = CANARY
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = GPS_LATITUDE
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (37.0, 36.0, 56.0)
    return exif


def gps_photo() -> bytes:
    """A JPEG as a phone writes it: EXIF with camera, artist and GPS position, and a comment."""
    out = io.BytesIO()
    gradient().save(out, format="JPEG", quality=95, exif=gps_exif(), comment=CANARY.encode())
    data = out.getvalue()
    assert_has_gps(data)
    return data


def assert_has_gps(jpeg: bytes) -> None:
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.getexif().get_ifd(ExifTags.IFD.GPSInfo)[ExifTags.GPS.GPSLatitude] == GPS_LATITUDE
    assert CAMERA.encode() in jpeg


def assert_no_exif(picture: bytes) -> None:
    with Image.open(io.BytesIO(picture)) as image:
        exif = image.getexif()
        assert not exif.get_ifd(ExifTags.IFD.GPSInfo)
        assert len(exif) == 0
        assert "comment" not in image.info
    assert b"Exif" not in picture
    assert_no_canary(picture)


def pixels(picture: bytes) -> Image.Image:
    with Image.open(io.BytesIO(picture)) as image:
        return image.convert("RGB")


def assert_no_canary(data: bytes, where: str = "") -> None:
    for canary in CANARIES:
        assert canary not in data, f"{canary!r} left in {where}"


# ------------------------------------------------------------------------------------------ PDFs


def pdf_bytes(pdf: pikepdf.Pdf, **options: object) -> bytes:
    out = io.BytesIO()
    pdf.save(out, **options)  # type: ignore[arg-type]
    return out.getvalue()


def xmp_naming_canary(pdf: pikepdf.Pdf) -> pikepdf.Stream:
    xmp = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
        f"<dc:creator><rdf:Seq><rdf:li>{CANARY}</rdf:li></rdf:Seq></dc:creator>"
        "</rdf:Description></rdf:RDF></x:xmpmeta>"
    )
    return pdf.make_stream(xmp.encode(), Type=Name.Metadata, Subtype=Name.XML)


def javascript(source: str) -> Dictionary:
    return Dictionary(Type=Name.Action, S=Name.JavaScript, JS=String(source))


def rgb_image_xobject(
    pdf: pikepdf.Pdf, data: bytes, size: tuple[int, int], filters: Name | Array
) -> pikepdf.Stream:
    width, height = size
    return pdf.make_stream(
        data,
        Type=Name.XObject,
        Subtype=Name.Image,
        Width=width,
        Height=height,
        ColorSpace=Name.DeviceRGB,
        BitsPerComponent=8,
        Filter=filters,
    )


def identifying_pdf(photo: bytes) -> bytes:
    """Two pages; the first draws the GPS photo as an image XObject and again, through a Form
    XObject, as a Flate-then-DCT image; the document names its author everywhere a PDF can and
    carries scripts, an attachment and an annotation by the author."""
    pdf = pikepdf.new()
    for _ in range(2):
        pdf.add_blank_page(page_size=(300, 300))
    page = pdf.pages[0]
    photo_xobject = rgb_image_xobject(pdf, photo, (64, 48), Name.DCTDecode)
    photo_xobject.Metadata = xmp_naming_canary(pdf)
    nested_photo = rgb_image_xobject(
        pdf, zlib.compress(photo), (64, 48), Array([Name.FlateDecode, Name.DCTDecode])
    )
    form = pdf.make_stream(
        b"q 64 0 0 48 0 0 cm /Nested Do Q",
        Type=Name.XObject,
        Subtype=Name.Form,
        BBox=[0, 0, 64, 48],
        Resources=Dictionary(XObject=Dictionary(Nested=nested_photo)),
        PieceInfo=Dictionary(Editor=Dictionary(Private=String(CANARY))),
    )
    page.obj.Resources = Dictionary(XObject=Dictionary(Photo=photo_xobject, Form=form))
    page.obj.Contents = pdf.make_stream(b"q 64 0 0 48 10 10 cm /Photo Do Q q 1 0 0 1 100 100 cm /Form Do Q")
    page.obj.AA = Dictionary(O=javascript("app.alert('page opened')"))
    note = Dictionary(
        Type=Name.Annot,
        Subtype=Name.Text,
        Rect=[10, 200, 30, 220],
        T=String(CANARY),
        M=String("D:20240301123456+03'00'"),
        Contents=String("A note on the page"),
        A=Dictionary(S=Name.Launch, F=String("C:\\Users\\CanaryUser\\run.exe")),
    )
    page.obj.Annots = pdf.make_indirect(Array([pdf.make_indirect(note)]))
    pdf.docinfo[Name.Author] = CANARY
    pdf.docinfo[Name.Creator] = "Canary Office 2024"
    pdf.Root.Metadata = xmp_naming_canary(pdf)
    pdf.Root.OpenAction = javascript("app.alert('opened')")
    pdf.Root.Names = Dictionary(
        JavaScript=Dictionary(Names=Array([String("init"), pdf.make_indirect(javascript("var x = 1;"))]))
    )
    pdf.attachments["notes.txt"] = pikepdf.AttachedFileSpec(pdf, b"notes written by " + CANARY.encode())
    data = pdf_bytes(pdf)
    assert CANARY.encode() in data
    assert b"JavaScript" in data
    assert b"Exif" in data
    assert CAMERA.encode() in data
    return data


def pdf_values(pdf: pikepdf.Pdf) -> Iterator[bytes]:
    """Every name, string and stream (decoded where QPDF can, raw otherwise) of every object."""
    for obj in pdf.objects:
        yield from _values(obj)
    yield from _values(pdf.trailer)


def _values(obj: object, *, top: bool = True) -> Iterator[bytes]:
    """What `obj` holds, down through its direct objects; the indirect ones it points to are
    walked on their own turn (following them would go round /Parent cycles)."""
    if not top and isinstance(obj, pikepdf.Object) and obj.is_indirect:
        return
    if isinstance(obj, pikepdf.Stream):
        try:
            yield obj.read_bytes()
        except pikepdf.PdfError:
            yield obj.read_raw_bytes()
        for key in obj.keys():  # noqa: SIM118 - a Stream is not iterable
            yield key.encode()
            yield from _values(obj.get(key), top=False)
    elif isinstance(obj, Dictionary):
        for key in obj.keys():  # noqa: SIM118
            yield key.encode()
            yield from _values(obj.get(key), top=False)
    elif isinstance(obj, Array):
        for item in obj:
            yield from _values(item, top=False)
    elif isinstance(obj, String):
        yield bytes(obj)
    elif isinstance(obj, Name):
        yield str(obj).encode()


def images_of(pdf: pikepdf.Pdf) -> list[bytes]:
    return [
        obj.read_raw_bytes()
        for obj in pdf.objects
        if isinstance(obj, pikepdf.Stream) and obj.get(Name.Subtype) == Name.Image
    ]


@pytest.fixture(scope="module")
def photo() -> bytes:
    return gps_photo()


@pytest.fixture(scope="module")
def cleaned_pdf(photo: bytes) -> tuple[bytes, CleanedDocument]:
    original = identifying_pdf(photo)
    return original, clean(original, DocumentKind.PDF)


def test_pdf_names_no_one_and_runs_nothing(cleaned_pdf: tuple[bytes, CleanedDocument]) -> None:
    _original, cleaned = cleaned_pdf
    assert cleaned.content_type == "application/pdf"
    assert_no_canary(cleaned.data, "the PDF's bytes")
    assert b"JavaScript" not in cleaned.data
    assert b"Exif" not in cleaned.data
    with pikepdf.open(io.BytesIO(cleaned.data)) as pdf:
        for value in pdf_values(pdf):
            assert_no_canary(value, "an object")
            assert b"JavaScript" not in value
            assert b"/Launch" not in value
            assert b"Exif" not in value
        assert Name.Info not in pdf.trailer
        assert Name.Metadata not in pdf.Root
        assert Name.OpenAction not in pdf.Root
        assert Name.AA not in pdf.pages[0].obj
        assert len(pdf.attachments) == 0
        note = pdf.pages[0].obj.Annots[0]
        assert Name.T not in note
        assert Name.M not in note
        assert Name.A not in note
        assert note.Contents == "A note on the page"  # the note itself is content: kept
        assert pdf.check_pdf_syntax() == []  # QPDF finds nothing wrong with the rewritten file


def test_pdf_gets_a_new_id(cleaned_pdf: tuple[bytes, CleanedDocument]) -> None:
    original, cleaned = cleaned_pdf
    with pikepdf.open(io.BytesIO(original)) as before, pikepdf.open(io.BytesIO(cleaned.data)) as after:
        old = {bytes(part) for part in before.trailer.ID}
        new = {bytes(part) for part in after.trailer.ID}
    assert old
    assert new
    assert not old & new


def test_pdf_photos_lose_their_exif_and_keep_their_pixels(
    photo: bytes, cleaned_pdf: tuple[bytes, CleanedDocument]
) -> None:
    _original, cleaned = cleaned_pdf
    with pikepdf.open(io.BytesIO(cleaned.data)) as pdf:
        photos = images_of(pdf)
        nested = pdf.pages[0].obj.Resources.XObject.Form.Resources.XObject.Nested
        assert nested.Filter == Name.DCTDecode  # the Flate layer undone, the JPEG kept
    assert len(photos) == 2
    for cleaned_photo in photos:
        assert_no_exif(cleaned_photo)
        # The coded picture is copied, not re-encoded: the very same pixels.
        assert ImageChops.difference(pixels(cleaned_photo), pixels(photo)).getbbox() is None


def test_pdf_pages_and_their_content_are_kept(cleaned_pdf: tuple[bytes, CleanedDocument]) -> None:
    original, cleaned = cleaned_pdf
    with pikepdf.open(io.BytesIO(original)) as before, pikepdf.open(io.BytesIO(cleaned.data)) as after:
        assert len(after.pages) == len(before.pages) == 2
        for old, new in zip(before.pages, after.pages, strict=True):
            assert new.obj.Contents.read_raw_bytes() == old.obj.Contents.read_raw_bytes()
            assert new.mediabox == old.mediabox
        assert set(after.pages[0].obj.Resources.XObject.keys()) == {"/Photo", "/Form"}


def test_pdf_earlier_revisions_are_not_kept(photo: bytes) -> None:
    """An incremental update that replaced the author's name leaves the old one in the file; the
    rewrite does not carry it over."""
    pdf = pikepdf.new()
    pdf.add_blank_page()
    pdf.docinfo[Name.Author] = CANARY
    first = pdf_bytes(pdf, object_stream_mode=pikepdf.ObjectStreamMode.disable)
    with pikepdf.open(io.BytesIO(first)) as written:  # numbered as in the file, not in memory
        info_number = written.trailer.Info.objgen[0]
        root_number = written.Root.objgen[0]
        size = int(written.trailer.Size)
    startxref = int(first.rsplit(b"startxref", 1)[1].split()[0])
    replacement = f"{info_number} 0 obj\n<< /Author (Someone Else) >>\nendobj\n".encode()
    xref_at = len(first) + len(replacement)
    update = (
        replacement
        + f"xref\n0 1\n0000000000 65535 f \n{info_number} 1\n{len(first):010d} 00000 n \n".encode()
        + f"trailer\n<< /Size {size} /Root {root_number} 0 R /Info {info_number} 0 R"
        f" /Prev {startxref} >>\nstartxref\n{xref_at}\n%%EOF\n".encode()
    )
    updated = first + update
    with pikepdf.open(io.BytesIO(updated)) as reread:
        assert str(reread.docinfo.Author) == "Someone Else"
    assert CANARY.encode() in updated

    cleaned = clean(updated, DocumentKind.PDF)

    assert_no_canary(cleaned.data)
    assert b"Someone Else" not in cleaned.data  # the current document information goes too
    assert b"/Prev" not in cleaned.data


def test_encrypted_pdf_is_not_cleaned() -> None:
    pdf = pikepdf.new()
    pdf.add_blank_page()
    pdf.docinfo[Name.Author] = CANARY
    locked = pdf_bytes(pdf, encryption=pikepdf.Encryption(user="user secret", owner="owner secret"))

    with pytest.raises(DocumentNotCleaned, match=r"^encrypted$") as refused:
        clean(locked, DocumentKind.PDF)
    assert refused.value.reason == "encrypted"


def test_pdf_with_only_an_owner_password_is_cleaned_and_decrypted(photo: bytes) -> None:
    """An owner password only restricts printing or copying: the file opens without one, and its
    photos are cleaned like any other (QPDF hands them over decrypted)."""
    with pikepdf.open(io.BytesIO(identifying_pdf(photo))) as pdf:
        restricted = pdf_bytes(pdf, encryption=pikepdf.Encryption(user="", owner="owner secret"))
    assert CANARY.encode() not in restricted  # encrypted: the canary is there, not in clear

    cleaned = clean(restricted, DocumentKind.PDF)

    assert_no_canary(cleaned.data)
    with pikepdf.open(io.BytesIO(cleaned.data)) as reread:
        assert not reread.is_encrypted
        assert Name.Info not in reread.trailer
        photos = images_of(reread)
    assert len(photos) == 2
    for cleaned_photo in photos:
        assert_no_exif(cleaned_photo)


def test_pdf_inline_jpeg_is_made_an_image_and_cleaned(photo: bytes) -> None:
    pdf = pikepdf.new()
    pdf.add_blank_page()
    pdf.pages[0].obj.Contents = pdf.make_stream(
        b"q 64 0 0 48 0 0 cm BI /W 64 /H 48 /CS /RGB /BPC 8 /F /DCT ID " + photo + b"\nEI Q"
    )
    original = pdf_bytes(pdf, compress_streams=False)
    assert CAMERA.encode() in original

    cleaned = clean(original, DocumentKind.PDF)

    assert_no_canary(cleaned.data)
    with pikepdf.open(io.BytesIO(cleaned.data)) as reread:
        assert b"BI" not in reread.pages[0].obj.Contents.read_bytes()
        (picture,) = images_of(reread)
    assert_no_exif(picture)
    assert ImageChops.difference(pixels(picture), pixels(photo)).getbbox() is None


def pdf_with_image_stream(data: bytes) -> bytes:
    pdf = pikepdf.new()
    pdf.add_blank_page()
    image = rgb_image_xobject(pdf, data, (8, 8), Name.DCTDecode)
    pdf.pages[0].obj.Resources = Dictionary(XObject=Dictionary(Im=image))
    pdf.pages[0].obj.Contents = pdf.make_stream(b"/Im Do")
    return pdf_bytes(pdf)


@pytest.mark.parametrize(
    "jpeg",
    [
        b"not a jpeg at all",
        b"\xff\xd8\xff\xe1\x40\x00Exif\x00\x00" + CANARY.encode(),  # a segment longer than the file
        b"\xff\xd8\x00\x00",  # no marker where one must be
    ],
    ids=["no-soi", "cut-segment", "no-marker"],
)
def test_pdf_with_a_jpeg_that_does_not_parse_is_refused(jpeg: bytes) -> None:
    with pytest.raises(DocumentNotCleaned, match=r"^unreadable$"):
        clean(pdf_with_image_stream(jpeg), DocumentKind.PDF)


def test_garbage_behind_a_pdf_header_is_unreadable() -> None:
    garbage = b"%PDF-1.7\n" + os.urandom(4096)
    assert sniff_document(garbage) is DocumentKind.PDF

    with pytest.raises(DocumentNotCleaned, match=r"^unreadable$"):
        clean(garbage, DocumentKind.PDF)


# -------------------------------------------------------------------------------------- packages


def package(parts: list[tuple[str, bytes]]) -> bytes:
    """A ZIP as office programs write one: real dates, Unix attributes, a comment."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.comment = b"zipped by " + CANARY.encode()
        for name, content in parts:
            entry = zipfile.ZipInfo(name, date_time=(2024, 3, 1, 12, 34, 56))
            entry.compress_type = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            entry.external_attr = 0o100644 << 16
            archive.writestr(entry, content)
    return out.getvalue()


def members(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {entry.filename: archive.read(entry) for entry in archive.infolist()}


def assert_clean_package(data: bytes) -> dict[str, bytes]:
    """No canary in any member, decompressed; every entry dated 1980, with no extra field, no
    Unix attributes; no archive comment."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.comment == b""
        for entry in archive.infolist():
            assert entry.date_time == FIXED_ZIP_TIME, entry.filename
            assert entry.extra == b""
            assert entry.comment == b""
            assert entry.create_system == 0
            assert entry.external_attr in (0x10, 0x20)
    parts = members(data)
    for name, content in parts.items():
        assert_no_canary(content, name)
    assert_no_canary(data, "the archive")
    return parts


def xml(text: str) -> bytes:
    return ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' + text).encode()


W = (
    'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" '
    'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" '
    'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
    'xmlns:w14="http://schemas.microsoft.com/office/word/2010/wordml" '
    'xmlns:w15="http://schemas.microsoft.com/office/word/2012/wordml" '
    'xmlns:wp14="http://schemas.microsoft.com/office/word/2010/wordprocessingDrawing" '
    'mc:Ignorable="w14 w15 wp14"'
)
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"


def content_types(overrides: dict[str, str], defaults: dict[str, str] | None = None) -> bytes:
    entries = {"rels": "application/vnd.openxmlformats-package.relationships+xml", "xml": "application/xml"}
    entries.update(defaults or {})
    return xml(
        '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        + "".join(f'<Default Extension="{ext}" ContentType="{kind}"/>' for ext, kind in entries.items())
        + "".join(f'<Override PartName="/{part}" ContentType="{kind}"/>' for part, kind in overrides.items())
        + "</Types>"
    )


def relationships(targets: list[tuple[str, str]], *, external: tuple[str, ...] = ()) -> bytes:
    return xml(
        f'<Relationships xmlns="{PKG_REL}">'
        + "".join(
            f'<Relationship Id="rId{n}" Type="{kind}" Target="{target}"'
            + (' TargetMode="External"' if target in external else "")
            + "/>"
            for n, (kind, target) in enumerate(targets, start=1)
        )
        + "</Relationships>"
    )


def document_properties() -> list[tuple[str, bytes]]:
    return [
        (
            "docProps/core.xml",
            xml(
                '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties"'
                ' xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:dcterms="http://purl.org/dc/terms/"'
                ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
                f"<dc:creator>{CANARY}</dc:creator><cp:lastModifiedBy>{CANARY}</cp:lastModifiedBy>"
                '<dcterms:created xsi:type="dcterms:W3CDTF">2024-03-01T12:34:56Z</dcterms:created>'
                "</cp:coreProperties>"
            ),
        ),
        (
            "docProps/app.xml",
            xml(
                '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/extended-properties">'
                f"<Company>{CANARY} Ltd</Company><Template>Normal.dotm</Template></Properties>"
            ),
        ),
        (
            "docProps/custom.xml",
            xml(
                '<Properties xmlns="http://schemas.openxmlformats.org/officeDocument/2006/custom-properties"'
                ' xmlns:vt="http://schemas.openxmlformats.org/officeDocument/2006/docPropsVTypes">'
                '<property fmtid="{D5CDD505-2E9C-101B-9397-08002B2CF9AE}" pid="2" name="Owner">'
                f"<vt:lpwstr>{CANARY}</vt:lpwstr></property></Properties>"
            ),
        ),
    ]


PROPERTY_OVERRIDES = {
    "docProps/core.xml": "application/vnd.openxmlformats-package.core-properties+xml",
    "docProps/app.xml": "application/vnd.openxmlformats-officedocument.extended-properties+xml",
    "docProps/custom.xml": "application/vnd.openxmlformats-officedocument.custom-properties+xml",
}


def package_relationships(main: str) -> bytes:
    return relationships(
        [
            (f"{REL}/officeDocument", main),
            (
                "http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties",
                "docProps/core.xml",
            ),
            (f"{REL}/extended-properties", "docProps/app.xml"),
            (f"{REL}/custom-properties", "docProps/custom.xml"),
        ]
    )


def identifying_xlsx() -> bytes:
    main = "xl/workbook.xml"
    return package(
        [
            (
                "[Content_Types].xml",
                content_types(
                    {
                        main: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml",
                        "xl/worksheets/sheet1.xml": (
                            "application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"
                        ),
                        "xl/comments1.xml": f"{OFFICE}spreadsheetml.comments+xml",
                        "xl/persons/person.xml": "application/vnd.ms-excel.person+xml",
                        "xl/threadedComments/threadedComment1.xml": (
                            "application/vnd.ms-excel.threadedcomments+xml"
                        ),
                        **PROPERTY_OVERRIDES,
                    }
                ),
            ),
            ("_rels/.rels", package_relationships(main)),
            *document_properties(),
            (
                main,
                xml(
                    '<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
                    f' xmlns:r="{REL}"'
                    ' xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006"'
                    ' xmlns:x15="http://schemas.microsoft.com/office/spreadsheetml/2010/11/main"'
                    ' xmlns:xr="http://schemas.microsoft.com/office/spreadsheetml/2014/revision"'
                    ' mc:Ignorable="x15 xr">'
                    f'<fileSharing userName="{CANARY}"/>'
                    '<mc:AlternateContent><mc:Choice Requires="x15">'
                    '<x15ac:absPath xmlns:x15ac="http://schemas.microsoft.com/office/spreadsheetml/2010/11/ac"'
                    ' url="C:\\Users\\CanaryUser\\Documents\\"/></mc:Choice></mc:AlternateContent>'
                    '<xr:revisionPtr revIDLastSave="0" documentId="13_ncr:1_{CANARY-GUID}"/>'
                    '<sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>'
                ),
            ),
            (
                "xl/_rels/workbook.xml.rels",
                relationships([(f"{REL}/worksheet", "worksheets/sheet1.xml")]),
            ),
            (
                "xl/worksheets/sheet1.xml",
                xml(
                    '<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                    '<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>Visible cell text</t></is></c>'
                    "</row>"
                    "</sheetData></worksheet>"
                ),
            ),
            (
                "xl/comments1.xml",
                xml(
                    '<comments xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                    f"<authors><author>{CANARY}</author></authors><commentList>"
                    '<comment ref="A1" authorId="0"><text><r><t>Check this figure</t></r></text></comment>'
                    "</commentList></comments>"
                ),
            ),
            (
                "xl/persons/person.xml",
                xml(
                    '<personList xmlns="http://schemas.microsoft.com/office/spreadsheetml/2018/threadedcomments">'
                    f'<person displayName="{CANARY}" id="{{0B1C}}" userId="canary@example.org"'
                    ' providerId="Canary AD"/></personList>'
                ),
            ),
            (
                "xl/threadedComments/threadedComment1.xml",
                xml(
                    '<ThreadedComments xmlns="http://schemas.microsoft.com/office/spreadsheetml/2018/threadedcomments">'
                    '<threadedComment ref="A1" dT="2024-03-01T12:34:56.00" personId="{0B1C}" id="{1}">'
                    "<text>Check this figure</text></threadedComment></ThreadedComments>"
                ),
            ),
            # The last printer's DEVMODE: its name, in UTF-16, in the first 64 bytes.
            (
                "xl/printerSettings/printerSettings1.bin",
                CANARY.encode("utf-16-le").ljust(64, b"\0") + bytes(156),
            ),
            (
                "xl/connections.xml",
                xml(
                    '<connections xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
                    '<connection id="1" name="Query" odcFile="C:\\Users\\CanaryUser\\Documents\\q.odc">'
                    '<dbPr connection="Provider=SQLOLEDB;User ID=CanaryUser;Password=secret;Data Source=db"/>'
                    "</connection></connections>"
                ),
            ),
        ]
    )


def identifying_docx(photo: bytes, *, extra: list[tuple[str, bytes]] | None = None) -> bytes:
    main = "word/document.xml"
    document = xml(
        f"<w:document {W}><w:body>"
        '<w:p w:rsidR="00AB12CD" w:rsidRDefault="00AB12CD" w14:paraId="1A2B3C4D">'
        '<w:r w:rsidR="00AB12CD"><w:t>The visible report text.</w:t></w:r>'
        f'<w:ins w:id="1" w:author="{CANARY}" w:date="2024-03-01T12:34:56Z">'
        '<w:r><w:t xml:space="preserve"> An inserted sentence.</w:t></w:r></w:ins>'
        '<w:commentRangeStart w:id="0"/><w:r><w:t>Commented words.</w:t></w:r><w:commentRangeEnd w:id="0"/>'
        '<w:r><w:commentReference w:id="0"/></w:r>'
        '<w:r><w:drawing><wp:inline xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing">'
        '<wp:extent cx="609600" cy="457200"/><wp:docPr id="1" name="Picture 1"/>'
        '<a:graphic xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main">'
        '<a:graphicData uri="http://schemas.openxmlformats.org/drawingml/2006/picture">'
        '<pic:pic xmlns:pic="http://schemas.openxmlformats.org/drawingml/2006/picture">'
        '<pic:nvPicPr><pic:cNvPr id="0" name="photo.jpg"/><pic:cNvPicPr/></pic:nvPicPr>'
        '<pic:blipFill><a:blip r:embed="rId4"/></pic:blipFill>'
        '<pic:spPr><a:xfrm><a:off x="0" y="0"/><a:ext cx="609600" cy="457200"/></a:xfrm></pic:spPr>'
        "</pic:pic></a:graphicData></a:graphic></wp:inline></w:drawing></w:r>"
        '</w:p><w:sectPr w:rsidR="00AB12CD"/></w:body></w:document>'
    )
    parts = [
        (
            "[Content_Types].xml",
            content_types(
                {
                    main: "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml",
                    "word/comments.xml": f"{OFFICE}wordprocessingml.comments+xml",
                    "word/settings.xml": f"{OFFICE}wordprocessingml.settings+xml",
                    "word/people.xml": f"{OFFICE}wordprocessingml.people+xml",
                    **PROPERTY_OVERRIDES,
                },
                {"jpeg": "image/jpeg", "xlsx": XLSX},
            ),
        ),
        ("_rels/.rels", package_relationships(main)),
        *document_properties(),
        (main, document),
        (
            "word/_rels/document.xml.rels",
            relationships(
                [
                    (f"{REL}/comments", "comments.xml"),
                    (f"{REL}/settings", "settings.xml"),
                    ("http://schemas.microsoft.com/office/2011/relationships/people", "people.xml"),
                    (f"{REL}/image", "media/image1.jpeg"),
                    (f"{REL}/package", "embeddings/Microsoft_Excel_Worksheet.xlsx"),
                ]
            ),
        ),
        (
            "word/comments.xml",
            xml(
                f'<w:comments {W}><w:comment w:id="0" w:author="{CANARY}" w:initials="CA"'
                ' w:date="2024-03-01T12:34:56Z"><w:p w:rsidR="00AB12CD">'
                "<w:r><w:t>Is this right?</w:t></w:r></w:p>"
                "</w:comment></w:comments>"
            ),
        ),
        (
            "word/settings.xml",
            xml(
                f'<w:settings {W}><w:zoom w:percent="100"/><w:attachedTemplate r:id="rId1"/>'
                '<w:docVars><w:docVar w:name="Owner" w:val="Canary Authorname"/></w:docVars>'
                '<w:rsids><w:rsidRoot w:val="00AB12CD"/><w:rsid w:val="00AB12CD"/></w:rsids>'
                '<w14:docId w14:val="1A2B3C4D"/><w15:docId w15:val="{CANARY-0000}"/></w:settings>'
            ),
        ),
        (
            "word/_rels/settings.xml.rels",
            relationships(
                [(f"{REL}/attachedTemplate", "file:///C:\\Users\\CanaryUser\\Templates\\Normal.dotm")],
                external=("file:///C:\\Users\\CanaryUser\\Templates\\Normal.dotm",),
            ),
        ),
        (
            "word/people.xml",
            xml(
                f'<w15:people {W}><w15:person w15:author="{CANARY}">'
                '<w15:presenceInfo w15:providerId="AD" w15:userId="S::canary@example.org::1"/>'
                "</w15:person></w15:people>"
            ),
        ),
        ("word/media/image1.jpeg", photo),
        ("word/embeddings/Microsoft_Excel_Worksheet.xlsx", identifying_xlsx()),
        *(extra or []),
    ]
    return package(parts)


def test_docx_names_no_one(photo: bytes) -> None:
    original = identifying_docx(photo)
    assert_has_gps(members(original)["word/media/image1.jpeg"])

    cleaned = clean(original, DocumentKind.PACKAGE)

    assert cleaned.content_type == DOCX
    parts = assert_clean_package(cleaned.data)
    assert set(parts) == set(members(original))
    for name, content in parts.items():
        if name.startswith("word/") and name.endswith(".xml"):
            assert b"rsid" not in content, name
            assert b"w:date=" not in content, name
            assert b"w:initials=" not in content, name
    settings = parts["word/settings.xml"]
    assert b"attachedTemplate" not in settings
    assert b"docVars" not in settings
    assert b"docId" not in settings
    assert b"attachedTemplate" not in parts["word/_rels/settings.xml.rels"]
    assert b'w:author=""' in parts["word/comments.xml"]  # blanked: Word requires the attribute
    assert b"<dc:creator" not in parts["docProps/core.xml"]
    assert_no_exif(parts["word/media/image1.jpeg"])
    assert pixels(parts["word/media/image1.jpeg"]).size == (64, 48)
    embedded = assert_clean_package(parts["word/embeddings/Microsoft_Excel_Worksheet.xlsx"])
    assert b"Visible cell text" in embedded["xl/worksheets/sheet1.xml"]


def test_docx_text_and_namespaces_survive(photo: bytes) -> None:
    cleaned = clean(identifying_docx(photo), DocumentKind.PACKAGE)

    document = members(cleaned.data)["word/document.xml"]
    for text in (b"The visible report text.", b"An inserted sentence.", b"Commented words."):
        assert text in document
    root = etree.fromstring(document)
    # mc:Ignorable names prefixes: each must still be declared, under its own name.
    ignorable = root.get("{http://schemas.openxmlformats.org/markup-compatibility/2006}Ignorable")
    assert ignorable == "w14 w15 wp14"
    assert {"w", "r", "mc", "w14", "w15", "wp14"} <= set(root.nsmap)
    assert b'w14:paraId="1A2B3C4D"' in document
    assert b"<w:ins " in document
    assert b"<w:commentReference " in document


def test_xlsx_comment_authors_and_paths_are_removed() -> None:
    original = identifying_xlsx()

    cleaned = clean(original, DocumentKind.PACKAGE)

    assert cleaned.content_type == XLSX
    parts = assert_clean_package(cleaned.data)
    assert b"Visible cell text" in parts["xl/worksheets/sheet1.xml"]
    assert b"Check this figure" in parts["xl/comments1.xml"]
    assert b"absPath" not in parts["xl/workbook.xml"]
    assert b"revisionPtr" not in parts["xl/workbook.xml"]
    assert b"AlternateContent" not in parts["xl/workbook.xml"]
    assert b"dT=" not in parts["xl/threadedComments/threadedComment1.xml"]
    assert b'<sheet name="Sheet1"' in parts["xl/workbook.xml"]
    printer = parts["xl/printerSettings/printerSettings1.bin"]
    assert CANARY.encode("utf-16-le") not in printer
    assert len(printer) == 64 + 156, "the rest of the printer settings is kept"
    assert b"odcFile" not in parts["xl/connections.xml"]
    assert b"secret" not in parts["xl/connections.xml"]
    assert b"Data Source=db" in parts["xl/connections.xml"]


def animated_gif_with_comment() -> bytes:
    frames = [Image.new("RGB", (16, 16), colour) for colour in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(
        out, format="GIF", save_all=True, append_images=frames[1:], loop=0, comment=CANARY.encode()
    )
    data = out.getvalue()
    assert CANARY.encode() in data
    with Image.open(io.BytesIO(data)) as gif:
        assert gif.n_frames == 2
    return data


def identifying_pptx() -> bytes:
    main = "ppt/presentation.xml"
    p = 'xmlns:p="http://schemas.openxmlformats.org/presentationml/2006/main"'
    a = 'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main"'
    return package(
        [
            (
                "[Content_Types].xml",
                content_types(
                    {
                        main: f"{OFFICE}presentationml.presentation.main+xml",
                        "ppt/slides/slide1.xml": f"{OFFICE}presentationml.slide+xml",
                        "ppt/commentAuthors.xml": (
                            "application/vnd.openxmlformats-officedocument.presentationml.commentAuthors+xml"
                        ),
                        "ppt/comments/comment1.xml": (
                            "application/vnd.openxmlformats-officedocument.presentationml.comments+xml"
                        ),
                        **PROPERTY_OVERRIDES,
                    },
                    {"gif": "image/gif"},
                ),
            ),
            ("_rels/.rels", package_relationships(main)),
            *document_properties(),
            (main, xml(f"<p:presentation {p}><p:sldIdLst/></p:presentation>")),
            (
                "ppt/slides/slide1.xml",
                xml(
                    f"<p:sld {p} {a}><p:cSld><p:spTree><p:sp><p:txBody><a:p><a:r>"
                    "<a:t>Visible slide text</a:t>"
                    "</a:r></a:p></p:txBody></p:sp></p:spTree></p:cSld></p:sld>"
                ),
            ),
            (
                "ppt/commentAuthors.xml",
                xml(
                    f'<p:cmAuthorLst {p}><p:cmAuthor id="0" name="{CANARY}" initials="CA" lastIdx="1"'
                    ' clrIdx="0"/></p:cmAuthorLst>'
                ),
            ),
            (
                "ppt/comments/comment1.xml",
                xml(
                    f'<p:cmLst {p}><p:cm authorId="0" dt="2024-03-01T12:34:56.000" idx="1">'
                    '<p:pos x="10" y="10"/><p:text>Slide comment</p:text></p:cm></p:cmLst>'
                ),
            ),
            ("ppt/media/image1.gif", animated_gif_with_comment()),
        ]
    )


def test_pptx_comment_authors_are_removed_and_gifs_stay_animated() -> None:
    cleaned = clean(identifying_pptx(), DocumentKind.PACKAGE)

    assert cleaned.content_type == PPTX
    parts = assert_clean_package(cleaned.data)
    assert b"Visible slide text" in parts["ppt/slides/slide1.xml"]
    assert b"Slide comment" in parts["ppt/comments/comment1.xml"]
    assert b"dt=" not in parts["ppt/comments/comment1.xml"]
    assert b'initials=""' in parts["ppt/commentAuthors.xml"]
    with Image.open(io.BytesIO(parts["ppt/media/image1.gif"])) as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 2
        assert "comment" not in gif.info


ODF_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:meta="urn:oasis:names:tc:opendocument:xmlns:meta:1.0" '
    'xmlns:dc="http://purl.org/dc/elements/1.1/" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:draw="urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" '
    'xmlns:xlink="http://www.w3.org/1999/xlink" '
    'xmlns:config="urn:oasis:names:tc:opendocument:xmlns:config:1.0" '
    'xmlns:officeooo="http://openoffice.org/2009/office"'
)


def odf_manifest(*, encrypted: bool = False) -> bytes:
    encryption = (
        '<manifest:encryption-data manifest:checksum-type="SHA1/1K" manifest:checksum="AAAA">'
        '<manifest:algorithm manifest:algorithm-name="Blowfish CFB" manifest:initialisation-vector="AAAA"/>'
        "</manifest:encryption-data>"
        if encrypted
        else ""
    )
    return xml(
        '<manifest:manifest xmlns:manifest="urn:oasis:names:tc:opendocument:xmlns:manifest:1.0"'
        ' manifest:version="1.3">'
        f'<manifest:file-entry manifest:full-path="/" manifest:media-type="{ODT}"/>'
        f'<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml">{encryption}'
        "</manifest:file-entry></manifest:manifest>"
    )


def identifying_odt(photo: bytes) -> bytes:
    return package(
        [
            # Out of place on purpose: the cleaned file must put it first.
            ("META-INF/manifest.xml", odf_manifest()),
            ("mimetype", ODT.encode()),
            (
                "meta.xml",
                xml(
                    f'<office:document-meta {ODF_NS} office:version="1.3"><office:meta>'
                    f"<meta:initial-creator>{CANARY}</meta:initial-creator><dc:creator>{CANARY}</dc:creator>"
                    "<meta:creation-date>2024-03-01T12:34:56</meta:creation-date>"
                    "<meta:generator>LibreOffice/7.6$Linux_X86_64</meta:generator>"
                    f'<meta:user-defined meta:name="Owner">{CANARY}</meta:user-defined>'
                    "</office:meta></office:document-meta>"
                ),
            ),
            (
                "content.xml",
                xml(
                    f'<office:document-content {ODF_NS} office:version="1.3"><office:body><office:text>'
                    '<text:tracked-changes><text:changed-region text:id="ct1"><text:insertion>'
                    f"<office:change-info><dc:creator>{CANARY}</dc:creator><dc:date>2024-03-01T12:34:56</dc:date>"
                    "</office:change-info></text:insertion></text:changed-region></text:tracked-changes>"
                    '<text:p officeooo:rsid="0012ab34" officeooo:paragraph-rsid="0012ab34">Visible ODF text'
                    f"<office:annotation><dc:creator>{CANARY}</dc:creator><dc:date>2024-03-01T12:34:56</dc:date>"
                    "<meta:creator-initials>CA</meta:creator-initials><text:p>An annotation</text:p>"
                    "</office:annotation></text:p>"
                    '<text:p><draw:frame><draw:image xlink:href="Pictures/photo.jpg"/></draw:frame></text:p>'
                    "</office:text></office:body></office:document-content>"
                ),
            ),
            ("styles.xml", xml(f'<office:document-styles {ODF_NS} office:version="1.3"/>')),
            (
                "settings.xml",
                xml(
                    f'<office:document-settings {ODF_NS} office:version="1.3"><office:settings>'
                    '<config:config-item-set config:name="ooo:configuration-settings">'
                    f'<config:config-item config:name="PrinterName" config:type="string">{CANARY} Printer'
                    "</config:config-item>"
                    '<config:config-item config:name="PrinterSetup" config:type="base64Binary">Q2FuYXJ5'
                    "</config:config-item>"
                    '<config:config-item config:name="Rsid" config:type="int">1190196</config:config-item>'
                    '<config:config-item config:name="AddParaSpacingToTableCells" config:type="boolean">true'
                    "</config:config-item></config:config-item-set></office:settings></office:document-settings>"
                ),
            ),
            ("Pictures/photo.jpg", photo),
            ("Thumbnails/thumbnail.png", png_with_text()),
        ]
    )


def png_with_text() -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", CANARY)
    out = io.BytesIO()
    gradient((32, 24)).save(out, format="PNG", pnginfo=info)
    return out.getvalue()


def test_odt_names_no_one(photo: bytes) -> None:
    original = identifying_odt(photo)

    cleaned = clean(original, DocumentKind.PACKAGE)

    assert cleaned.content_type == ODT
    parts = assert_clean_package(cleaned.data)
    with zipfile.ZipFile(io.BytesIO(cleaned.data)) as archive:
        first = archive.infolist()[0]
    assert first.filename == "mimetype"
    assert first.compress_type == zipfile.ZIP_STORED
    assert parts["mimetype"] == ODT.encode()
    assert cleaned.data[30:38] == b"mimetype"
    assert cleaned.data[38 : 38 + len(ODT)] == ODT.encode()
    meta = etree.fromstring(parts["meta.xml"])
    assert [etree.QName(child).localname for child in meta] == ["meta"]
    assert len(meta[0]) == 0
    assert meta.get("{urn:oasis:names:tc:opendocument:xmlns:office:1.0}version") == "1.3"
    content = parts["content.xml"]
    assert b"Visible ODF text" in content
    assert b"An annotation" in content
    assert b"creator-initials" not in content
    assert b"rsid" not in content  # LibreOffice's editing-session ids link copies of a file
    assert b'"Rsid"' not in parts["settings.xml"]
    assert b"2024-03-01" not in content
    assert b"PrinterName" not in parts["settings.xml"]
    assert b"PrinterSetup" not in parts["settings.xml"]
    assert b"AddParaSpacingToTableCells" in parts["settings.xml"]
    assert_no_exif(parts["Pictures/photo.jpg"])
    with Image.open(io.BytesIO(parts["Thumbnails/thumbnail.png"])) as thumbnail:
        assert "Author" not in thumbnail.info


def test_a_photo_too_large_to_re_encode_loses_its_exif_all_the_same() -> None:
    """Over the child's image budget (half its address space), a JPEG is not re-encoded but has
    its metadata segments cut: the same pixels, no EXIF."""
    out = io.BytesIO()
    gradient((4000, 3000)).save(out, format="JPEG", quality=80, exif=gps_exif())
    large = out.getvalue()
    assert_has_gps(large)
    docx = identifying_docx(gps_photo(), extra=[("word/media/image2.jpeg", large)])

    cleaned = clean(docx, DocumentKind.PACKAGE, memory_bytes=192 * MB)

    picture = assert_clean_package(cleaned.data)["word/media/image2.jpeg"]
    assert_no_exif(picture)
    assert ImageChops.difference(pixels(picture), pixels(large)).getbbox() is None


def test_png_chunk_filter_keeps_the_drawing_only() -> None:
    from app.intake.cleaning.office_metadata import png_without_metadata

    original = png_with_text()
    assert CANARY.encode() in original

    filtered = png_without_metadata(original)

    assert_no_canary(filtered)
    with Image.open(io.BytesIO(filtered)) as image:
        assert "Author" not in image.info
        assert ImageChops.difference(image.convert("RGB"), pixels(original)).getbbox() is None
    with pytest.raises(DocumentNotCleaned, match=r"^unreadable$"):
        png_without_metadata(original[:40])


def test_office_signatures_are_removed_with_their_references() -> None:
    main = "word/document.xml"
    signature_origin = "http://schemas.openxmlformats.org/package/2006/relationships/digital-signature/origin"
    signed = package(
        [
            (
                "[Content_Types].xml",
                content_types(
                    {
                        main: f"{OFFICE}wordprocessingml.document.main+xml",
                        "_xmlsignatures/sig1.xml": (
                            "application/vnd.openxmlformats-package.digital-signature-xmlsignature+xml"
                        ),
                    },
                    {"sigs": "application/vnd.openxmlformats-package.digital-signature-origin"},
                ),
            ),
            (
                "_rels/.rels",
                relationships(
                    [(f"{REL}/officeDocument", main), (signature_origin, "_xmlsignatures/origin.sigs")]
                ),
            ),
            (
                main,
                xml(
                    f"<w:document {W}><w:body><w:p><w:r><w:t>Signed text</w:t></w:r></w:p></w:body>"
                    "</w:document>"
                ),
            ),
            ("_xmlsignatures/origin.sigs", b""),
            (
                "_xmlsignatures/_rels/origin.sigs.rels",
                relationships([(f"{signature_origin}/../signature", "sig1.xml")]),
            ),
            (
                "_xmlsignatures/sig1.xml",
                xml(f"<Signature><X509SubjectName>CN={CANARY}</X509SubjectName></Signature>"),
            ),
        ]
    )

    parts = assert_clean_package(clean(signed, DocumentKind.PACKAGE).data)

    assert not [name for name in parts if name.startswith("_xmlsignatures/")]
    assert b"_xmlsignatures" not in parts["[Content_Types].xml"]
    assert b"_xmlsignatures" not in parts["_rels/.rels"]
    assert b"officeDocument" in parts["_rels/.rels"]
    assert b"Signed text" in parts[main]


def test_encrypted_odf_is_not_cleaned(photo: bytes) -> None:
    locked = package([("mimetype", ODT.encode()), ("META-INF/manifest.xml", odf_manifest(encrypted=True))])

    with pytest.raises(DocumentNotCleaned, match=r"^encrypted$"):
        clean(locked, DocumentKind.PACKAGE)


def test_a_tiff_inside_is_refused_rather_than_kept(photo: bytes) -> None:
    out = io.BytesIO()
    gradient().save(out, format="TIFF", exif=gps_exif())
    docx = identifying_docx(photo, extra=[("word/media/image2.tiff", out.getvalue())])

    with pytest.raises(DocumentNotCleaned, match=r"^has a part that cannot be cleaned$"):
        clean(docx, DocumentKind.PACKAGE)


def test_a_zip_that_is_not_an_office_file_is_not_cleaned() -> None:
    archive = package([("holiday/photo.txt", b"just a zip"), ("readme.md", b"# notes")])
    assert sniff_document(archive) is DocumentKind.PACKAGE

    with pytest.raises(DocumentNotCleaned, match=r"^not an office document$"):
        clean(archive, DocumentKind.PACKAGE)


@pytest.fixture(scope="module")
def zip_bomb() -> bytes:
    """One member declaring 1 GiB of zeros, a few MB compressed."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        archive.writestr("[Content_Types].xml", content_types({}))
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            zeros = bytes(16 * MB)
            for _ in range(64):
                member.write(zeros)
    return out.getvalue()


def test_a_zip_bomb_is_refused_without_being_expanded(zip_bomb: bytes) -> None:
    assert len(zip_bomb) < 8 * MB

    started = time.monotonic()
    with pytest.raises(DocumentNotCleaned, match=r"^too large when unpacked$"):
        # 256 MiB of address space: expanding the member would not fit.
        clean(zip_bomb, DocumentKind.PACKAGE, memory_bytes=256 * MB)
    assert time.monotonic() - started < 5


def test_a_zip_of_too_many_members_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for n in range(10_001):
            archive.writestr(f"{n}", b"")

    with pytest.raises(DocumentNotCleaned, match=r"^too large when unpacked$"):
        clean(out.getvalue(), DocumentKind.PACKAGE)


# ---------------------------------------------------------------------------------------- limits


def worker_processes() -> list[int]:
    """Our children still running (or not yet reaped) the document worker."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        if parent == os.getpid() and b"document_worker" in command:
            found.append(int(entry.name))
    return found


def test_too_little_time_kills_the_child(cleaned_pdf: tuple[bytes, CleanedDocument]) -> None:
    original, _ = cleaned_pdf

    with pytest.raises(DocumentNotCleaned, match=r"^took too long$"):
        clean(original, DocumentKind.PDF, seconds=0.05)
    assert worker_processes() == []


def test_too_little_memory_is_refused(cleaned_pdf: tuple[bytes, CleanedDocument]) -> None:
    original, _ = cleaned_pdf

    with pytest.raises(DocumentNotCleaned, match=r"^needed too much memory$"):
        clean(original, DocumentKind.PDF, memory_bytes=32 * MB)
    assert worker_processes() == []


def test_output_over_the_cap_is_refused_by_the_child(cleaned_pdf: tuple[bytes, CleanedDocument]) -> None:
    original, cleaned = cleaned_pdf

    with pytest.raises(DocumentNotCleaned, match=r"^output too large$"):
        clean(original, DocumentKind.PDF, max_output_bytes=len(cleaned.data) - 1)
    assert clean(original, DocumentKind.PDF, max_output_bytes=len(cleaned.data)).data


def test_output_over_the_cap_is_not_read_past_it(
    cleaned_pdf: tuple[bytes, CleanedDocument], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that ignores its cap (as a compromised one could) is cut off by the parent."""
    original, _cleaned = cleaned_pdf
    command: Callable[..., list[str]] = documents._worker_command

    def lenient(kind: DocumentKind, memory: int, cpu: int, max_output: int) -> list[str]:
        return command(kind, memory, cpu, 64 * MB)

    monkeypatch.setattr(documents, "_worker_command", lenient)
    with pytest.raises(DocumentNotCleaned, match=r"^output too large$"):
        clean(original, DocumentKind.PDF, max_output_bytes=100)
    assert worker_processes() == []


@pytest.mark.parametrize(
    ("returncode", "reason"),
    [
        (-signal.SIGXCPU, "took too long"),  # the child's own CPU limit
        (-signal.SIGKILL, "needed too much memory"),  # not sent by us: the OOM killer
        (-signal.SIGSEGV, "unreadable"),
        (-signal.SIGABRT, "unreadable"),
        (1, "the cleaner did not run"),  # uncaught outside the cleaning: a library missing here
        (2, "the cleaner did not run"),
        (120, "unreadable"),
        (71, "encrypted"),
        (75, "needed too much memory"),
    ],
)
def test_how_the_child_ended_says_why(returncode: int, reason: str) -> None:
    assert documents._reason_for_exit(returncode) == reason


def test_the_child_does_not_see_the_servers_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAYLIGHT_SECRET_KEY", "server secret")
    environment = documents._worker_environment()
    assert "DAYLIGHT_SECRET_KEY" not in environment
    assert set(environment) <= {
        "PATH",
        "PYTHONPATH",
        "PYTHONSAFEPATH",
        "PYTHONNOUSERSITE",
        "PYTHONDONTWRITEBYTECODE",
    }


def test_reasons_never_carry_library_text() -> None:
    with pytest.raises(DocumentNotCleaned) as refused:
        clean(b"%PDF-1.4\n" + CANARY.encode() * 100, DocumentKind.PDF)
    assert str(refused.value) == refused.value.reason == "unreadable"


@pytest.mark.parametrize(("limit", "value"), [("max_output_bytes", 0), ("seconds", 0), ("memory_bytes", -1)])
def test_limits_must_be_positive(limit: str, value: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        clean(b"%PDF-1.7", DocumentKind.PDF, **{limit: value})


def test_office_content_types_are_declared() -> None:
    from app.intake.cleaning.office_metadata import _MAIN_OOXML_TYPES, ODF_CONTENT_TYPES

    assert {content_type for _, content_type in _MAIN_OOXML_TYPES.values()} <= DOCUMENT_CONTENT_TYPES
    assert len(ODF_CONTENT_TYPES) == 9


# -------------------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3", DocumentKind.PDF),
        (b"\x00" * 500 + b"%PDF-1.4", DocumentKind.PDF),  # junk before the header, as readers allow
        (b"\x00" * (SNIFF_DOCUMENT_BYTES - 5) + b"%PDF-", DocumentKind.PDF),
        (b"\x00" * (SNIFF_DOCUMENT_BYTES - 4) + b"%PDF-", None),  # the header ends past the window
        (b"PK\x03\x04\x14\x00\x00\x00", DocumentKind.PACKAGE),
        (b"PK\x05\x06" + b"\x00" * 18, None),  # an empty ZIP: nothing to clean
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", None),  # an OLE file: .doc, or an encrypted .docx
        (b"\xff\xd8\xff\xe0", None),
        (b"", None),
    ],
)
def test_sniff_document(head: bytes, kind: DocumentKind | None) -> None:
    assert sniff_document(head) is kind
