"""The child process that cleans one document: `python -m app.intake.cleaning.document_worker KIND
MEMORY_BYTES CPU_SECONDS MAX_OUTPUT` (started by `documents.clean_document`, never by hand).

It confines itself before it reads a byte of the document: the address space (MEMORY_BYTES,
interpreter included), CPU time (CPU_SECONDS, then SIGXCPU), no file written (RLIMIT_FSIZE 0;
Python ignores SIGXFSZ, so a write fails instead), no core dump (it would put the document on
disk), a handful of descriptors, and no new processes (RLIMIT_NPROC 0: a parser bug turned into
code execution cannot start a shell; the kernel does not apply it to root, one more reason not to
run the service as root). The limits are hard ones, so nothing in the process can raise them
again (root could). Only then are pikepdf and lxml imported and the document read; Python's own start and
the app package's imports (Pillow, and app.kit through the image errors) come before, and read
nothing of the submitter's.

Standard output carries "<content type>\\n<cleaned document>"; any other ending is an exit code
from `documents.EXIT_CODES`. What the libraries print on standard error is discarded by the parent.
"""

from __future__ import annotations

import io
import resource
import sys
from typing import Final

from app.intake.cleaning.documents import (
    EXIT_CODES,
    CleanedDocument,
    DocumentKind,
    DocumentNotCleaned,
    NotCleanedReason,
)

# Standard streams plus what imports open one at a time (module files, shared libraries).
_MAX_OPEN_FILES: Final = 16
_READ_CHUNK: Final = 1 << 20
_USAGE_ERROR: Final = 2


def main(argv: list[str]) -> int:
    try:
        kind = DocumentKind(argv[0])
        memory_bytes, cpu_seconds, max_output = (int(value) for value in argv[1:4])
    except (IndexError, ValueError):
        return _USAGE_ERROR
    if len(argv) != 4 or min(memory_bytes, cpu_seconds, max_output) <= 0:
        return _USAGE_ERROR
    _confine(memory_bytes, cpu_seconds)
    try:
        cleaned = _clean(kind, _read_input(memory_bytes), memory_bytes)
    except DocumentNotCleaned as refused:
        return EXIT_CODES.get(NotCleanedReason(refused.reason), EXIT_CODES[NotCleanedReason.UNREADABLE])
    except MemoryError:
        return EXIT_CODES[NotCleanedReason.TOO_MUCH_MEMORY]
    except RecursionError:
        return EXIT_CODES[NotCleanedReason.UNREADABLE]
    except Exception:
        # Whatever a parser raises on a damaged or hostile file (pikepdf.PdfError, zipfile's
        # BadZipFile, lxml's XMLSyntaxError, zlib.error, EOFError...): the file is refused. The
        # parent only ever learns the code, never the text.
        return EXIT_CODES[NotCleanedReason.UNREADABLE]
    if len(cleaned.data) > max_output:
        return EXIT_CODES[NotCleanedReason.OUTPUT_TOO_LARGE]
    out = sys.stdout.buffer
    out.write(cleaned.content_type.encode("ascii") + b"\n")
    out.write(cleaned.data)
    out.flush()
    return 0


def _confine(memory_bytes: int, cpu_seconds: int) -> None:
    _lower(resource.RLIMIT_CORE, 0)
    _lower(resource.RLIMIT_FSIZE, 0)
    _lower(resource.RLIMIT_NOFILE, _MAX_OPEN_FILES)
    _lower(resource.RLIMIT_NPROC, 0)
    # The soft limit sends SIGXCPU, which the parent reads as "took too long"; the hard one,
    # a second later, is SIGKILL for a process that somehow survives it.
    _lower(resource.RLIMIT_CPU, cpu_seconds, hard=cpu_seconds + 1)
    _lower(resource.RLIMIT_AS, memory_bytes)


def _lower(limit: int, soft: int, *, hard: int | None = None) -> None:
    """Set a limit no higher than the one already in force (an unprivileged process may only
    lower its hard limits)."""
    _, current_hard = resource.getrlimit(limit)
    hard = soft if hard is None else hard
    if current_hard != resource.RLIM_INFINITY:
        hard = min(hard, current_hard)
        soft = min(soft, hard)
    resource.setrlimit(limit, (soft, hard))


def _read_input(limit: int) -> bytes:
    """All of standard input; more than the address space allows is refused as it arrives."""
    received = io.BytesIO()
    stdin = sys.stdin.buffer
    while chunk := stdin.read(_READ_CHUNK):
        if received.tell() + len(chunk) > limit:
            raise DocumentNotCleaned(NotCleanedReason.TOO_MUCH_MEMORY)
        received.write(chunk)
    return received.getvalue()


def _clean(kind: DocumentKind, data: bytes, memory_bytes: int) -> CleanedDocument:
    # Imported under the limits: these are the modules that parse submitter bytes.
    if kind is DocumentKind.PDF:
        from app.intake.cleaning.pdf_metadata import clean_pdf

        return clean_pdf(data)
    from app.intake.cleaning.office_metadata import clean_package

    return clean_package(data, memory_bytes=memory_bytes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
