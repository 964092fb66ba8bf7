"""Streaming encryption and decryption run in constant memory (a bound, not a timing test).

A 20 MiB stream is produced lazily by a custom `io.RawIOBase` and consumed by a
sink that only counts and hashes, so the only large allocations tracemalloc
could see are the ones the code under test makes.
"""

from __future__ import annotations

import hashlib
import io
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.crypto import streaming
from app.crypto.binding import bind

STREAM_BYTES = 20 * 1024 * 1024 + 12_345  # not a multiple of the chunk size
PEAK_LIMIT = 1024 * 1024
KEY = bytes(range(32))
AAD = bind("daylight/contract/v1", "StreamColumn", "tip_attachments", "blob", "big", 1)
PATTERN = hashlib.shake_256(b"daylight memory test").digest(65_537)  # odd length: shifting data


class PatternSource(io.RawIOBase):
    """``total`` bytes of a repeating pattern, produced on demand; hashes what it hands out."""

    def __init__(self, total: int) -> None:
        super().__init__()
        self._remaining = total
        self._offset = 0
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        wanted = min(len(view), self._remaining)
        filled = 0
        while filled < wanted:
            start = self._offset % len(PATTERN)
            take = min(wanted - filled, len(PATTERN) - start)
            view[filled : filled + take] = PATTERN[start : start + take]
            filled += take
            self._offset += take
        self.sha256.update(view[:wanted])
        self._remaining -= wanted
        return wanted


class EncryptingSource(io.RawIOBase):
    """The sealed stream of a `PatternSource`, encrypted on demand as it is read."""

    def __init__(self, plaintext: PatternSource) -> None:
        super().__init__()
        self._plaintext = plaintext
        self._encryptor = streaming.StreamEncryptor(KEY, AAD)
        self._pending = memoryview(self._encryptor.header)
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending and not self._done:
            block = self._plaintext.read(streaming.CHUNK_BYTES)
            if block:
                self._pending = memoryview(self._encryptor.update(block))
            else:
                self._pending = memoryview(self._encryptor.finalize())
                self._done = True
        take = min(len(view), len(self._pending))
        view[:take] = self._pending[:take]
        self._pending = self._pending[take:]
        return take


class CountingSink(io.RawIOBase):
    """Keeps nothing but a byte count and a hash."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.sha256 = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        self.count += size
        self.sha256.update(data)
        return size


def traced_peak(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


@pytest.fixture
def no_tracing() -> Iterator[None]:
    assert not tracemalloc.is_tracing()
    yield
    assert not tracemalloc.is_tracing()


@pytest.mark.usefixtures("no_tracing")
def test_encrypt_file_runs_in_constant_memory() -> None:
    source, sink = PatternSource(STREAM_BYTES), CountingSink()
    sizes: list[int] = []

    peak = traced_peak(lambda: sizes.append(streaming.encrypt_file(source, sink, KEY, AAD)))

    assert sizes == [STREAM_BYTES]
    chunks = -(-STREAM_BYTES // streaming.CHUNK_BYTES)
    assert sink.count == streaming.HEADER_BYTES + STREAM_BYTES + chunks * streaming.TAG_BYTES
    assert peak < PEAK_LIMIT, f"encrypt_file peaked at {peak} bytes"


@pytest.mark.usefixtures("no_tracing")
def test_decrypt_chunks_runs_in_constant_memory() -> None:
    plaintext = PatternSource(STREAM_BYTES)
    source, sink = EncryptingSource(plaintext), CountingSink()

    def drain() -> None:
        for chunk in streaming.decrypt_chunks(source, KEY, AAD):
            sink.write(chunk)

    peak = traced_peak(drain)

    assert sink.count == STREAM_BYTES
    assert sink.sha256.digest() == plaintext.sha256.digest()
    assert peak < PEAK_LIMIT, f"decrypt_chunks peaked at {peak} bytes"


@pytest.mark.usefixtures("no_tracing")
def test_the_measurement_sees_a_buffering_consumer() -> None:
    # Control: the same pipeline, but holding the whole plaintext, must blow the bound;
    # otherwise the two tests above could not fail.
    source = EncryptingSource(PatternSource(STREAM_BYTES))
    held: list[bytes] = []

    peak = traced_peak(lambda: held.extend(streaming.decrypt_chunks(source, KEY, AAD)))

    assert sum(len(c) for c in held) == STREAM_BYTES
    assert peak > STREAM_BYTES > PEAK_LIMIT
