"""A streaming multipart/form-data reader that never spools an upload to disk in clear.

Starlette's form parser buffers uploads in temporary files: plaintext
evidence on the server's disk. Here each file part is handed, chunk by
chunk, to a sink the caller supplies (an encrypting writer); text fields are
collected in memory within a byte budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.kit.errors import AppError, PayloadTooLarge
from app.web.i18n import N_


class FileSink(Protocol):
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class MalformedMultipart(AppError):
    status = 400
    code = "malformed_body"
    public_message = N_("The form data could not be read.")


class UnexpectedFilePart(AppError):
    status = 422
    code = "invalid_input"
    public_message = N_("Files are accepted only in the 'files' field.")


class UnexpectedField(AppError):
    status = 422
    code = "invalid_input"
    public_message = N_("The form has a field this site does not know.")


class _SinkOnFirstByte:
    """Opens the real sink only when data arrives; an empty part opens nothing."""

    def __init__(self, open_sink: Callable[[], FileSink]) -> None:
        self._open_sink = open_sink
        self._sink: FileSink | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        if self._sink is None:
            self._sink = self._open_sink()
        self._sink.write(data)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()


class StreamingFormReader:
    """Feed body chunks; text fields end up in `fields`, file parts go to sinks from `open_file`."""

    def __init__(
        self,
        content_type_header: str,
        *,
        file_field: str,
        text_fields: frozenset[str],
        open_file: Callable[[str | None], FileSink],
        max_field_bytes: int,
        max_files: int,
        max_parts: int,
        fields: dict[str, list[str]] | None = None,
    ) -> None:
        """``fields``: where text fields go, when the caller needs them even if reading fails."""
        _, options = parse_options_header(content_type_header)
        boundary = options.get(b"boundary")
        if not boundary:
            raise MalformedMultipart
        self.fields: dict[str, list[str]] = {} if fields is None else fields
        self.file_count = 0
        self._part_count = 0
        self._max_parts = max_parts
        self._text_fields = text_fields
        self._file_field = file_field
        self._open_file = open_file
        self._max_field_bytes = max_field_bytes
        self._max_files = max_files
        self._field_bytes = 0
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, bytes] = {}
        self._current_name: str | None = None
        self._current_value = bytearray()
        self._current_sink: FileSink | None = None
        self._complete = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
                "on_part_data": self._on_part_data,
                "on_part_end": self._on_part_end,
                "on_end": self._on_end,
            },
        )

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise MalformedMultipart from exc

    def finish(self) -> None:
        try:
            self._parser.finalize()
        except MultipartParseError as exc:
            raise MalformedMultipart from exc
        if not self._complete:
            raise MalformedMultipart  # the body ended before the closing boundary

    def _on_end(self) -> None:
        self._complete = True

    def _on_part_begin(self) -> None:
        self._part_count += 1
        if self._part_count > self._max_parts:
            raise PayloadTooLarge(N_("The form has more parts than this service accepts."))
        self._headers = {}
        self._current_value = bytearray()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_name.decode("latin-1").lower()] = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def _on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get("content-disposition", b""))
        if disposition != b"form-data" or b"name" not in options:
            raise MalformedMultipart
        name = options[b"name"].decode("utf-8", "replace")
        if b"filename" in options:
            # The client's file name is dropped here, before anything is stored.
            if name != self._file_field:
                raise UnexpectedFilePart
            declared_type = self._headers.get("content-type", b"").decode("latin-1").strip() or None
            # Browsers send an empty part with filename="" when no file was
            # chosen: the sink opens on the first byte, so that part stores nothing.
            self._current_sink = _SinkOnFirstByte(lambda: self._open_counted_file(declared_type))
        elif name in self._text_fields:
            self._current_name = name
        else:
            raise UnexpectedField

    def _open_counted_file(self, declared_type: str | None) -> FileSink:
        self.file_count += 1
        if self.file_count > self._max_files:
            raise PayloadTooLarge(N_("Too many files are attached to this report."))
        return self._open_file(declared_type)

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._current_sink is not None:
            self._current_sink.write(data[start:end])
            return
        self._field_bytes += end - start
        if self._field_bytes > self._max_field_bytes:
            raise PayloadTooLarge(N_("The form fields are larger than this service accepts."))
        self._current_value += data[start:end]

    def _on_part_end(self) -> None:
        if self._current_sink is not None:
            self._current_sink.close()
            self._current_sink = None
            return
        if self._current_name is None:
            raise MalformedMultipart
        try:
            value = self._current_value.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMultipart from exc
        self.fields.setdefault(self._current_name, []).append(value)
        self._current_name = None
