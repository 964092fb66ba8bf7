"""Removing identifying metadata from submitted PDF, Office and OpenDocument files, in a child process.

Threat: a document names and locates the person who sent it as surely as a photo does. A PDF's
document information and XMP name its author, the software and the dates it was made and changed;
its /ID ties it to the file on the author's disk; a photo drawn on a page keeps the camera's EXIF
(GPS position, serial number) inside the JPEG stream; annotations carry their writer's name; an
embedded file or an older revision left behind an incremental update can carry anything. An
Office or OpenDocument file holds the author and "last modified by" names, the company, the
template's path (with a user name in it), comment and tracked-change authors and dates, revision
session ids (rsids) that link copies of a file, printer names, and the photos in it with their
EXIF. The adversary is a state whose police the submitter is reporting, and who may see the file
again (a leak, a seized device, a published case file).

Contract: `clean_document` hands the file to `app.intake.cleaning.document_worker`, a fresh Python
process that first confines itself (address space, CPU time, no files written, few descriptors,
no child processes, no core dump) and only then reads the document from its standard input; it
writes back the cleaned file, or exits with a code that names why it could not. The parsers that
read submitter bytes (QPDF through pikepdf, libxml2 through lxml, zlib, Pillow's decoders) run
only there: a crash, a runaway allocation or an endless loop in one of them costs a child, never
the web server, and the child sees none of the server's secrets (it gets no environment but PATH
and what imports the app, and its working directory is /). What is removed from each format,
and what is left alone, is in `pdf_metadata` and `office_metadata`. A file that cannot be
cleaned raises `DocumentNotCleaned` with a fixed English `reason`; the caller stores it as sent
and warns staff, as for images it cannot clean.

Unlike images, documents are not rebuilt from their visible content: rasterising a PDF or
re-typing a letter would lose text, links and forms that staff need. They are edited in place:
what is known to identify is removed, and the rest is kept byte for byte where the format
allows. That is a list of known fields, so it can miss a field nobody has thought of; the
modules' docstrings say what is left alone so that staff can judge.

Limits, all set by the caller: `seconds` of wall-clock time for the whole exchange (the child is
killed and reaped when it passes), and the same rounded up as the child's CPU limit, a backstop
should the parent die first; `memory_bytes` of address space for the child, interpreter and
libraries included: about 90 MiB is Python, Pillow, pikepdf, lxml and the app's own imports
before a byte of the document is read (64 MiB cleans nothing, 96 MiB cleans a small file), and
half of it is the budget for re-encoding the pictures in an Office file (a picture over budget
falls back to a lossless strip, see `office_metadata`), so 512 MiB is a sensible setting;
`max_output_bytes` for the cleaned file, enforced by the child before it writes and again here
while reading, so an oversized answer is never held whole.

Cost: a process start per document, about 0.4 s of wall-clock time for a small file, most of it
importing the app package (Pillow, and FastAPI and SQLAlchemy through `app.kit.errors`).
"""

from __future__ import annotations

import logging
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Final

SNIFF_DOCUMENT_BYTES: Final = 1024

PDF_CONTENT_TYPE: Final = "application/pdf"
# What a cleaned document may be declared as: the child's answer is checked against this list, so
# a child that misbehaves cannot put arbitrary text into a stored content type.
DOCUMENT_CONTENT_TYPES: Final = frozenset(
    {
        PDF_CONTENT_TYPE,
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.template",
        "application/vnd.ms-word.document.macroEnabled.12",
        "application/vnd.ms-word.template.macroEnabled.12",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.template",
        "application/vnd.ms-excel.sheet.macroEnabled.12",
        "application/vnd.ms-excel.template.macroEnabled.12",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "application/vnd.openxmlformats-officedocument.presentationml.slideshow",
        "application/vnd.openxmlformats-officedocument.presentationml.template",
        "application/vnd.ms-powerpoint.presentation.macroEnabled.12",
        "application/vnd.ms-powerpoint.slideshow.macroEnabled.12",
        "application/vnd.ms-powerpoint.template.macroEnabled.12",
        "application/vnd.oasis.opendocument.text",
        "application/vnd.oasis.opendocument.text-template",
        "application/vnd.oasis.opendocument.text-master",
        "application/vnd.oasis.opendocument.spreadsheet",
        "application/vnd.oasis.opendocument.spreadsheet-template",
        "application/vnd.oasis.opendocument.presentation",
        "application/vnd.oasis.opendocument.presentation-template",
        "application/vnd.oasis.opendocument.graphics",
        "application/vnd.oasis.opendocument.graphics-template",
    }
)


class DocumentKind(StrEnum):
    PDF = "pdf"
    PACKAGE = "package"  # a ZIP that may be an Office Open XML or OpenDocument file


class NotCleanedReason(StrEnum):
    """Why a document was not cleaned: fixed phrases for staff and logs, never a library's text
    (which can quote the submitted file)."""

    ENCRYPTED = "encrypted"
    NOT_OFFICE = "not an office document"
    UNREADABLE = "unreadable"
    UNCLEANABLE_PART = "has a part that cannot be cleaned"
    UNPACKS_TOO_LARGE = "too large when unpacked"
    TOOK_TOO_LONG = "took too long"
    TOO_MUCH_MEMORY = "needed too much memory"
    OUTPUT_TOO_LARGE = "output too large"
    # Not the file's fault: the cleaner could not be started, or failed before reading anything
    # (a missing library on this server). Logged as an error for the operator.
    CLEANER_FAILED = "the cleaner did not run"


class DocumentNotCleaned(Exception):
    def __init__(self, reason: NotCleanedReason) -> None:
        super().__init__(reason.value)
        self.reason: str = reason.value


@dataclass(frozen=True, slots=True)
class CleanedDocument:
    data: bytes | bytearray
    content_type: str  # one of DOCUMENT_CONTENT_TYPES


def sniff_document(head: bytes) -> DocumentKind | None:
    """PDF when "%PDF-" occurs in the first SNIFF_DOCUMENT_BYTES (readers accept a header after
    leading junk, so the cleaner must too: otherwise such a file would be stored as sent); PACKAGE
    when the bytes start as a ZIP local file header. Never the client's type or file name."""
    if b"%PDF-" in head[:SNIFF_DOCUMENT_BYTES]:
        return DocumentKind.PDF
    if head.startswith(b"PK\x03\x04"):
        return DocumentKind.PACKAGE
    return None


# --------------------------------------------------------------------------- protocol with the child

logger = logging.getLogger("daylight.intake")

WORKER_MODULE: Final = "app.intake.cleaning.document_worker"
# How the child says why it stopped. Clear of Python's own codes (1 for an uncaught exception, 2
# for a usage error, 120 for a failed flush at exit) and of the shell's 128 + signal, so that a
# child that dies any other way is not mistaken for one that refused the file for a reason.
EXIT_CODES: Final[Mapping[NotCleanedReason, int]] = {
    NotCleanedReason.UNREADABLE: 70,
    NotCleanedReason.ENCRYPTED: 71,
    NotCleanedReason.NOT_OFFICE: 72,
    NotCleanedReason.UNCLEANABLE_PART: 73,
    NotCleanedReason.UNPACKS_TOO_LARGE: 74,
    NotCleanedReason.TOO_MUCH_MEMORY: 75,
    NotCleanedReason.OUTPUT_TOO_LARGE: 76,
}
_REASON_OF_EXIT: Final = {code: reason for reason, code in EXIT_CODES.items()}
_PYTHON_FAILED: Final = frozenset({1, 2})
# A child killed by a signal: SIGXCPU is its own CPU limit; SIGKILL that we did not send is the
# kernel's OOM killer (the CPU limit's hard ceiling is a second past the soft one, whose SIGXCPU
# kills first). Anything else (SIGSEGV, SIGABRT, SIGBUS) is a parser that crashed on the file.
_REASON_OF_SIGNAL: Final = {
    signal.SIGXCPU: NotCleanedReason.TOOK_TOO_LONG,
    signal.SIGKILL: NotCleanedReason.TOO_MUCH_MEMORY,
}
# The child's answer is "<content type>\n<document>"; a content type is short.
_MAX_HEADER_BYTES: Final = 256
_READ_CHUNK: Final = 1 << 16
_WRITE_CHUNK: Final = 1 << 20
# The directory the running `app` package was imported from: the child imports the very same code
# (an editable install, a wheel, or a source tree on PYTHONPATH alike).
_APP_ROOT: Final = str(Path(__file__).resolve().parents[3])


def clean_document(
    data: bytes, kind: DocumentKind, *, max_output_bytes: int, seconds: float, memory_bytes: int
) -> CleanedDocument:
    """Clean `data` in a confined child process; raises DocumentNotCleaned with the reason.

    Blocks for up to `seconds` (run it in a worker thread). Non-positive limits are a programming
    error (ValueError).
    """
    if max_output_bytes <= 0 or seconds <= 0 or memory_bytes <= 0:
        raise ValueError("document cleaning needs positive limits")
    cpu_seconds = max(1, math.ceil(seconds))
    command = _worker_command(kind, memory_bytes, cpu_seconds, max_output_bytes)
    returncode, output = _run_worker(command, data, seconds, max_output_bytes + _MAX_HEADER_BYTES)
    if returncode != 0:
        raise DocumentNotCleaned(_reason_for_exit(returncode))
    return _parse_answer(output, max_output_bytes)


def _worker_command(
    kind: DocumentKind, memory_bytes: int, cpu_seconds: int, max_output_bytes: int
) -> list[str]:
    if not sys.executable:
        raise RuntimeError("document cleaning needs the path of the Python interpreter (sys.executable)")
    return [
        sys.executable,
        "-m",
        WORKER_MODULE,
        DocumentKind(kind).value,
        str(memory_bytes),
        str(cpu_seconds),
        str(max_output_bytes),
    ]


def _worker_environment() -> dict[str, str]:
    """Not the server's environment, which holds its secrets (database URL, keys): only what
    Python needs to find the app, and switches that keep the child from reading or writing more
    than it must (no current directory on sys.path, no user site, no bytecode files)."""
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": _APP_ROOT,
        "PYTHONSAFEPATH": "1",
        "PYTHONNOUSERSITE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def _run_worker(command: list[str], data: bytes, seconds: float, max_stdout: int) -> tuple[int, bytearray]:
    """Feed `data` to the child and collect its standard output, within `seconds` overall and
    `max_stdout` bytes; its standard error is read (so it cannot block on a full pipe) and thrown
    away: it can quote the submitted file, and none of it may reach a reason or a log."""
    deadline = time.monotonic() + seconds
    try:
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            close_fds=True,
            env=_worker_environment(),
            cwd="/",
        )
    except OSError as exc:
        # Out of processes or memory, or no interpreter: the upload is kept as sent, not a 500.
        logger.error("the document cleaner could not be started: %s", type(exc).__name__)
        raise DocumentNotCleaned(NotCleanedReason.CLEANER_FAILED) from None
    try:
        output = _exchange(process, data, deadline, max_stdout)
        returncode = process.wait(timeout=max(deadline - time.monotonic(), 0))
    except subprocess.TimeoutExpired:
        raise DocumentNotCleaned(NotCleanedReason.TOOK_TOO_LONG) from None
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()  # reaped on every path: no zombie, no child left running
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()
    return returncode, output


def _exchange(process: subprocess.Popen[bytes], data: bytes, deadline: float, max_stdout: int) -> bytearray:
    stdin, stdout, stderr = process.stdin, process.stdout, process.stderr
    if stdin is None or stdout is None or stderr is None:
        raise RuntimeError("the document worker was started without its pipes")
    output = bytearray()
    view = memoryview(data)
    written = 0
    with selectors.DefaultSelector() as selector:
        if data:
            os.set_blocking(stdin.fileno(), False)
            selector.register(stdin, selectors.EVENT_WRITE)
        else:
            stdin.close()
        selector.register(stdout, selectors.EVENT_READ)
        selector.register(stderr, selectors.EVENT_READ)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise subprocess.TimeoutExpired(process.args, 0)
            for key, _events in selector.select(remaining):
                if key.fileobj is stdin:
                    try:
                        written += os.write(stdin.fileno(), view[written : written + _WRITE_CHUNK])
                    except BlockingIOError:
                        continue
                    except BrokenPipeError:
                        written = len(data)  # the child stopped reading: its exit code says why
                    if written >= len(data):
                        selector.unregister(stdin)
                        stdin.close()
                    continue
                chunk = os.read(key.fd, _READ_CHUNK)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                if key.fileobj is stdout:
                    output += chunk
                    if len(output) > max_stdout:
                        # Stop reading at the cap: the child promised not to send this much.
                        raise DocumentNotCleaned(NotCleanedReason.OUTPUT_TOO_LARGE)
    # The buffer itself, not a copy: the caller's memory reservation counts one output.
    return output


def _reason_for_exit(returncode: int) -> NotCleanedReason:
    if returncode in _PYTHON_FAILED:
        # Python's own codes: an uncaught exception or a usage error, before or outside the
        # cleaning's own refusals (pikepdf or lxml not importable, say). Every document would be
        # stored as sent: the operator must hear of it.
        logger.error("the document cleaner failed to run (exit code %d)", returncode)
        return NotCleanedReason.CLEANER_FAILED
    if returncode < 0:
        try:
            return _REASON_OF_SIGNAL.get(signal.Signals(-returncode), NotCleanedReason.UNREADABLE)
        except ValueError:
            return NotCleanedReason.UNREADABLE
    return _REASON_OF_EXIT.get(returncode, NotCleanedReason.UNREADABLE)


def _parse_answer(output: bytearray, max_output_bytes: int) -> CleanedDocument:
    newline = output.find(b"\n", 0, _MAX_HEADER_BYTES)
    if newline < 0:
        raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
    content_type = output[:newline].decode("ascii", errors="replace")
    if content_type not in DOCUMENT_CONTENT_TYPES:
        raise DocumentNotCleaned(NotCleanedReason.UNREADABLE)
    del output[: newline + 1]  # in place: the document is not copied again
    if len(output) > max_output_bytes:
        raise DocumentNotCleaned(NotCleanedReason.OUTPUT_TOO_LARGE)
    return CleanedDocument(data=output, content_type=content_type)
