"""Referral bundles: one file, sealed to its recipients, that proves what a lead approved.

The byte layout, key derivations and verification steps are specified in docs/referral-format.md, so
that a recipient can check a bundle with another implementation. In short::

    header   "DLRB" | 0x01 | bundle id:16 | n:u8 | n × (fingerprint:32 | HPKE-sealed content key:1172)
    items    each item's streaming-AEAD ciphertext (app.crypto.streaming), in index order
    index    envelope (app.crypto.envelope) under a key derived from the content key, AAD = header
    trailer  index length:u32 | "DLRE"

The index holds the manifest bytes, the audit event proof, and each item's path, plaintext size and
SHA-256, ciphertext size and SHA-256. So `verify_bundle` checks every byte of the file without
decrypting an item: the header is the index's AAD, the index is authenticated, each item's ciphertext
hashes to what the index says, and the four parts must fill the file exactly.

Threats answered: a bundle altered in transit or at rest (any byte: it fails to verify); an item
swapped between bundles, positions or paths (its key and AAD bind all three); a server that seals a
manifest other than the one a lead approved, or to someone the lead did not approve (the manifest's
hash and the recipients' fingerprints are in the audit event the proof shows in the log); a
forged approval (the proof must verify against the log key and witness quorum the recipient pins);
a hostile bundle aimed at the recipient's machine (bounded sizes and counts, strict item paths, no
traversal, no symlinks followed, nothing written before the whole bundle verified).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
import struct
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.audit_log.checkpoint import VerifierKey
from app.audit_log.cosignature import WitnessKey
from app.audit_log.evidence import FORMAT as EVENT_PROOF_FORMAT
from app.audit_log.evidence import verify_event_proof
from app.crypto import envelope, sealing, streaming
from app.crypto.binding import bind
from app.crypto.errors import DecryptionError
from app.referrals.keys import FINGERPRINT_BYTES, fingerprint_digest, format_fingerprint

FORMAT = "daylight-referral-bundle/v1"
MANIFEST_FORMAT = "daylight-referral-manifest/v1"
APPROVAL_ACTION = "referral.approve"
APPROVAL_OBJECT_TYPE = "referral"

MAGIC = b"DLRB"
VERSION = 1
TRAILER_MAGIC = b"DLRE"
CONTENT_KEY_BYTES = 32
# seal_to's output for a 32-byte key: "DLH\x01" | ML-KEM-768 ciphertext (1088) | X25519 share (32)
# | the key (32) and its AES-256-GCM tag (16).
SEALED_KEY_BYTES = 4 + 1088 + 32 + CONTENT_KEY_BYTES + 16
INDEX_KEY_VERSION = 1  # the envelope's key_version field; one index key per bundle

_FIXED_HEADER = struct.Struct(">4sB16sB")  # magic, version, bundle id, recipient count
_RECIPIENT_ENTRY_BYTES = FINGERPRINT_BYTES + SEALED_KEY_BYTES
_TRAILER = struct.Struct(">I4s")  # index length, end marker
_LENGTH = struct.Struct(">I")
_PATH_LENGTH = struct.Struct(">H")
_ITEM_FIELDS = struct.Struct(">Q32sQ32s")  # size, sha256, ciphertext size, ciphertext sha256

# Limits against hostile bundles: a reader holds the header and the index in memory, nothing else.
MAX_RECIPIENTS = 16
MAX_ITEMS = 4096
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
MAX_PROOF_BYTES = 1024 * 1024
MAX_INDEX_BYTES = 8 * 1024 * 1024
MAX_ITEM_BYTES = 2**40
MAX_PATH_BYTES = 255
MAX_PATH_DEPTH = 16
MAX_HEADER_BYTES = _FIXED_HEADER.size + MAX_RECIPIENTS * _RECIPIENT_ENTRY_BYTES

# One segment: letters, digits, '.', '_', '-', not starting with a dot (no ".", "..", hidden files).
_PATH_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# What `open_bundle` writes beside the items, at the top of the output folder.
MANIFEST_FILE = "manifest.json"
PROOF_FILE = "audit-proof.json"
_RESERVED_TOP_LEVEL = frozenset({MANIFEST_FILE, PROOF_FILE})
# '~' cannot occur in an item path, so a temporary name never meets an item's.
_PARTIAL_SUFFIX = "~partial"
_READ_BLOCK = 256 * 1024
# The one problem reported for a key the bundle is not sealed to (the CLI then shows the fingerprints).
NOT_A_RECIPIENT = "this bundle is not sealed to this key"


class BundleError(ValueError):
    """`write_bundle` was given inputs that cannot make a bundle that verifies (the message says why)."""


class BundleItemChanged(BundleError):
    """An item's bytes do not match the size or SHA-256 the manifest lists: it changed after approval."""


class BundleOutputError(Exception):
    """`open_bundle` cannot write where it was asked to (not empty, not a folder, not writable)."""


@dataclass(frozen=True)
class BundleItem:
    """One file to seal. ``chunks`` produces its plaintext on demand, in pieces of any size; it is called
    once, and the writer never holds more than one piece and one 64 KiB chunk."""

    path: str
    size: int
    sha256: str
    chunks: Callable[[], Iterable[bytes]]


@dataclass(frozen=True)
class WrittenBundle:
    """What `write_bundle` wrote: the SHA-256 (hex) and size of the whole file."""

    sha256: str
    size: int


@dataclass(frozen=True)
class BundleEntry:
    """An item as the bundle's index lists it."""

    path: str
    size: int
    sha256: str


@dataclass
class BundleReport:
    """The outcome of `verify_bundle` / `open_bundle`. ``ok`` only when ``problems`` is empty.

    Everything else is what could be read, even from a bundle that does not verify; only trust it
    when ``ok``. ``origin`` is the audit log's name, set once its checkpoint signature verified;
    ``approved_at`` is the approval event's time (``YYYY-MM-DDTHH:MM:SS.ffffffZ``) once the proof
    verified; ``checkpoint_time`` is when the log signed the tree that holds it (Unix seconds).
    """

    ok: bool = False
    problems: list[str] = field(default_factory=list)
    bundle_id: uuid.UUID | None = None
    recipients: list[str] = field(default_factory=list)
    manifest: dict[str, Any] | None = None
    referral_id: str | None = None
    origin: str | None = None
    approved_at: str | None = None
    checkpoint_time: int | None = None
    witnessed_by: list[str] = field(default_factory=list)
    items: list[BundleEntry] = field(default_factory=list)
    # SHA-256 (hex) of the manifest's exact bytes, once the index opened: what the approval names.
    manifest_sha256: str | None = None


@dataclass(frozen=True)
class _IndexEntry:
    path: str
    size: int
    sha256: bytes
    ciphertext_size: int
    ciphertext_sha256: bytes


@dataclass(frozen=True)
class _Verified:
    """What `open_bundle` needs after verification: the key and where each item is."""

    content_key: bytes
    bundle_id: uuid.UUID
    entries: list[_IndexEntry]
    offsets: list[int]
    manifest: bytes
    proof: bytes


class _Malformed(ValueError):
    """A part of the bundle cannot be read; the message is the problem shown to the reader."""


# --- Key derivations and contexts (docs/referral-format.md, "Keys") -----------------------------------


def _sealed_key_context(bundle_id: uuid.UUID, recipient: bytes) -> tuple[str, str, bytes, bytes]:
    return (FORMAT, "content-key", bundle_id.bytes, recipient)


def _derive(content_key: bytes, *context: str | bytes | int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=bind(FORMAT, *context)).derive(
        content_key
    )


def _index_key(content_key: bytes, bundle_id: uuid.UUID) -> bytes:
    return _derive(content_key, "index-key", bundle_id.bytes)


def _item_key(content_key: bytes, bundle_id: uuid.UUID, position: int) -> bytes:
    return _derive(content_key, "item-key", bundle_id.bytes, position)


def _item_aad(bundle_id: uuid.UUID, position: int, path: str) -> bytes:
    return bind(FORMAT, "item", bundle_id.bytes, position, path)


def ciphertext_size(size: int) -> int:
    """The streaming-AEAD ciphertext size of ``size`` plaintext bytes: header, data, one tag per chunk
    (at least one chunk, the final one)."""
    chunks = max(1, -(-size // streaming.CHUNK_BYTES))
    return streaming.HEADER_BYTES + size + chunks * streaming.TAG_BYTES


# --- Checks shared by the writer and the reader -------------------------------------------------------


def _path_problem(path: object) -> str | None:
    if not isinstance(path, str) or not path.isascii():
        return "an item path must be ASCII text"
    if not 1 <= len(path) <= MAX_PATH_BYTES:
        return f"an item path is 1 to {MAX_PATH_BYTES} characters"
    segments = path.split("/")
    if len(segments) > MAX_PATH_DEPTH:
        return f"the item path {path!r} is more than {MAX_PATH_DEPTH} levels deep"
    for segment in segments:
        if _PATH_SEGMENT.fullmatch(segment) is None:
            return (
                f"the item path {path!r} is not relative '/'-separated names of letters, digits, '.', '_' "
                "and '-' (up to 100 each, none starting with '.')"
            )
    if segments[0].casefold() in _RESERVED_TOP_LEVEL:
        return f"the item path {path!r} is reserved for the bundle's own files"
    return None


def _paths_problem(paths: Sequence[str]) -> str | None:
    """Two items that would land on one file (case-insensitive file systems too), or a file where
    another item needs a folder."""
    files: set[str] = set()
    folders: set[str] = set()
    for path in paths:
        folded = path.casefold()
        if folded in files or folded in folders:
            return f"two items would be written to {path!r}"
        files.add(folded)
        segments = folded.split("/")
        folders.update("/".join(segments[:depth]) for depth in range(1, len(segments)))
    clash = files & folders
    if clash:
        return f"an item path is also the folder of another item: {sorted(clash)[0]!r}"
    return None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Malformed(f"has the key {key!r:.80} twice")
        result[key] = value
    return result


def _refuse_constant(name: str) -> object:
    raise _Malformed(f"contains {name}, which is not JSON")


def _strict_json(data: bytes | str, what: str) -> Any:
    """JSON with one reading only: UTF-8, no duplicate keys, no NaN or infinities."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except _Malformed as exc:
        raise _Malformed(f"{what} {exc}") from None
    except UnicodeDecodeError:
        raise _Malformed(f"{what} is not UTF-8 text") from None
    except (ValueError, RecursionError):
        raise _Malformed(f"{what} is not valid JSON") from None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _manifest_problems(
    manifest: bytes, entries: Sequence[tuple[str, int, str]], recipients: Sequence[str]
) -> tuple[dict[str, Any] | None, str | None, list[str]]:
    """(parsed manifest, referral id, problems): the manifest must name its format and referral, and
    list exactly the sealed items (path, size, sha256) in order; a ``recipients`` list, when present,
    must name exactly the sealed recipients."""
    if len(manifest) > MAX_MANIFEST_BYTES:
        return None, None, [f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes"]
    try:
        document = _strict_json(manifest, "the manifest")
    except _Malformed as exc:
        return None, None, [str(exc)]
    if not isinstance(document, dict):
        return None, None, ["the manifest is not a JSON object"]
    if document.get("format") != MANIFEST_FORMAT:
        return (
            None,
            None,
            [f"the manifest's format is {document.get('format')!r:.80}, not {MANIFEST_FORMAT!r}"],
        )
    problems: list[str] = []
    referral_id = document.get("referral_id")
    if not isinstance(referral_id, str) or not _is_canonical_uuid(referral_id):
        problems.append("the manifest's referral_id is not a lower-case hyphenated UUID")
        referral_id = None
    listed = document.get("items")
    if not isinstance(listed, list):
        problems.append("the manifest has no list of items")
    elif len(listed) != len(entries):
        problems.append(f"the manifest lists {len(listed)} items; the bundle holds {len(entries)}")
    else:
        for position, (item, (path, size, sha256)) in enumerate(zip(listed, entries, strict=True)):
            if not isinstance(item, dict) or (item.get("path"), item.get("size"), item.get("sha256")) != (
                path,
                size,
                sha256,
            ):
                problems.append(f"item {position + 1} ({path!r}) differs from the manifest's entry for it")
            elif not _is_count(item["size"]):
                problems.append(f"the manifest's size of item {position + 1} is not a whole number")
    if "recipients" in document:
        named = document["recipients"]
        fingerprints = (
            [entry.get("fingerprint") for entry in named if isinstance(entry, dict)]
            if isinstance(named, list)
            else []
        )
        if not isinstance(named, list) or len(fingerprints) != len(named):
            problems.append("the manifest's recipients are not a list of objects with a fingerprint")
        elif sorted(map(str, fingerprints)) != sorted(recipients):
            problems.append("the manifest's recipients are not the ones the bundle is sealed to")
    return document, referral_id, problems


def _is_canonical_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def _approval_problems(
    event: object, manifest: bytes, referral_id: str | None, recipients: Sequence[str]
) -> list[str]:
    """The proven event must be the approval of this referral, of this exact manifest, to exactly these
    recipients (fingerprints)."""
    if not isinstance(event, dict):
        return ["the audit proof holds no event"]
    problems: list[str] = []
    if event.get("action") != APPROVAL_ACTION or event.get("object_type") != APPROVAL_OBJECT_TYPE:
        problems.append(
            f"the proven event is {event.get('action')!r:.80} on {event.get('object_type')!r:.40}, "
            f"not {APPROVAL_ACTION!r} on a referral"
        )
    if referral_id is not None and event.get("object_id") != referral_id:
        problems.append("the proven approval is for another referral than the manifest's")
    if event.get("outcome") != "success":
        problems.append("the proven event is not a successful approval")
    raw_details = event.get("details")
    try:
        details = (
            _strict_json(raw_details, "the approval's details") if isinstance(raw_details, str) else None
        )
    except _Malformed as exc:
        return [*problems, str(exc)]
    if not isinstance(details, dict):
        return [*problems, "the approval's details are not a JSON object"]
    if details.get("manifest_sha256") != hashlib.sha256(manifest).hexdigest():
        problems.append(
            "the manifest is not the one the lead approved (its SHA-256 differs from the event's)"
        )
    approved = details.get("recipients")
    if not isinstance(approved, list) or not all(isinstance(entry, str) for entry in approved):
        problems.append("the approval does not list its recipients' fingerprints")
    elif len(set(approved)) != len(approved) or set(approved) != set(recipients):
        problems.append("the bundle is not sealed to exactly the recipients the lead approved")
    return problems


def _check_witness_policy(witness_keys: Sequence[WitnessKey], witnesses_required: int) -> None:
    # The caller's mistake, not the bundle's: raised before the file is read (as verify_event_proof does).
    names = [key.name for key in witness_keys]
    raw_keys = [key.public_key.public_bytes_raw() for key in witness_keys]
    if len(set(names)) != len(names) or len(set(raw_keys)) != len(raw_keys):
        raise ValueError("each trusted witness must have its own name and its own key")
    if isinstance(witnesses_required, bool) or not (
        isinstance(witnesses_required, int) and 0 <= witnesses_required <= len(witness_keys)
    ):
        raise ValueError(f"witnesses_required must be from 0 to the {len(witness_keys)} witnesses trusted")


# --- Writing -------------------------------------------------------------------------------------------


class _CountingSink:
    """Writes everything to ``sink`` and keeps the size and SHA-256 of the whole file."""

    def __init__(self, sink: BinaryIO) -> None:
        self._sink = sink
        self.size = 0
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> None:
        remaining = data  # bytes, not a memoryview: a blob writer may keep what it is given
        while remaining:
            written = self._sink.write(remaining)
            # A raw stream may write less than asked; None is a non-blocking stream that wrote nothing.
            if written is None or written <= 0:
                raise BlockingIOError("write_bundle needs a blocking sink")
            remaining = remaining[written:]
        self.size += len(data)
        self.sha256.update(data)


def _proof_bytes(proof: Mapping[str, object]) -> bytes:
    if not isinstance(proof, Mapping) or proof.get("format") != EVENT_PROOF_FORMAT:
        raise BundleError(f"the proof is not a {EVENT_PROOF_FORMAT} document")
    try:
        text = json.dumps(
            dict(proof), ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise BundleError(f"the proof cannot be written as JSON: {exc}") from None
    data = text.encode("utf-8")
    if len(data) > MAX_PROOF_BYTES:
        raise BundleError(f"the proof is larger than {MAX_PROOF_BYTES} bytes")
    return data


def _check_items(items: Sequence[BundleItem]) -> None:
    if len(items) > MAX_ITEMS:
        raise BundleError(f"a bundle holds at most {MAX_ITEMS} items")
    for item in items:
        problem = _path_problem(item.path)
        if problem is not None:
            raise BundleError(problem)
        if not _is_count(item.size) or item.size > MAX_ITEM_BYTES:
            raise BundleError(f"the size of {item.path!r} must be a whole number up to {MAX_ITEM_BYTES}")
        if not isinstance(item.sha256, str) or _SHA256_HEX.fullmatch(item.sha256) is None:
            raise BundleError(f"the sha256 of {item.path!r} must be 64 lower-case hex digits")
    problem = _paths_problem([item.path for item in items])
    if problem is not None:
        raise BundleError(problem)


def _index_plaintext_size(manifest: bytes, proof: bytes, items: Sequence[BundleItem]) -> int:
    per_item = sum(_PATH_LENGTH.size + len(item.path) + _ITEM_FIELDS.size for item in items)
    return 3 * _LENGTH.size + len(manifest) + len(proof) + per_item


def write_bundle(
    sink: BinaryIO,
    *,
    bundle_id: uuid.UUID,
    manifest: bytes,
    proof: Mapping[str, object],
    items: Sequence[BundleItem],
    recipients: Sequence[sealing.PublicKey],
) -> WrittenBundle:
    """Seal ``items`` with ``manifest`` and the approval's event ``proof`` to ``recipients``, into ``sink``.

    Everything is checked before the first byte is written: the manifest (UTF-8 JSON of
    ``daylight-referral-manifest/v1`` listing exactly ``items``), the paths, the recipients, and that the
    proof's event is the approval of this referral, of these manifest bytes, to these recipients (its
    signatures are the reader's to check). Raises BundleError for any of that. Items are then streamed:
    `BundleItemChanged` when an item's bytes do not match its declared size and SHA-256. After an
    exception, what ``sink`` received is not a bundle: discard it.
    """
    if not isinstance(bundle_id, uuid.UUID):
        raise BundleError("the bundle id is a UUID")
    if not isinstance(manifest, bytes):
        raise BundleError("the manifest is bytes")
    if not 1 <= len(recipients) <= MAX_RECIPIENTS:
        raise BundleError(f"a bundle is sealed to 1 to {MAX_RECIPIENTS} recipients")
    digests = sorted({fingerprint_digest(key): key for key in recipients}.items())
    if len(digests) != len(recipients):
        raise BundleError("a recipient is listed twice")
    fingerprints = [format_fingerprint(digest) for digest, _ in digests]
    _check_items(items)
    parsed, referral_id, problems = _manifest_problems(
        manifest, [(item.path, item.size, item.sha256) for item in items], fingerprints
    )
    if problems:
        raise BundleError("; ".join(problems))
    assert parsed is not None  # noqa: S101 - no problems means it parsed
    proof_data = _proof_bytes(proof)
    problems = _approval_problems(json.loads(proof_data).get("event"), manifest, referral_id, fingerprints)
    if problems:
        raise BundleError("; ".join(problems))
    if _index_plaintext_size(manifest, proof_data, items) + envelope.OVERHEAD_BYTES > MAX_INDEX_BYTES:
        raise BundleError(f"the manifest, proof and item list exceed {MAX_INDEX_BYTES} bytes")

    content_key = os.urandom(CONTENT_KEY_BYTES)
    header = bytearray(_FIXED_HEADER.pack(MAGIC, VERSION, bundle_id.bytes, len(digests)))
    for digest, public_key in digests:
        header += digest + sealing.seal_to(public_key, content_key, *_sealed_key_context(bundle_id, digest))
    out = _CountingSink(sink)
    out.write(bytes(header))
    entries = [
        _write_item(out, content_key, bundle_id, position, item) for position, item in enumerate(items)
    ]
    index = envelope.seal_envelope(
        _index_key(content_key, bundle_id),
        _encode_index(manifest, proof_data, entries),
        bytes(header),
        key_version=INDEX_KEY_VERSION,
    )
    out.write(index)
    out.write(_TRAILER.pack(len(index), TRAILER_MAGIC))
    return WrittenBundle(sha256=out.sha256.hexdigest(), size=out.size)


def _write_item(
    out: _CountingSink, content_key: bytes, bundle_id: uuid.UUID, position: int, item: BundleItem
) -> _IndexEntry:
    encryptor = streaming.StreamEncryptor(
        _item_key(content_key, bundle_id, position), _item_aad(bundle_id, position, item.path)
    )
    sealed_hash, plain_hash = hashlib.sha256(), hashlib.sha256()
    sealed_size = 0
    size = 0

    def emit(data: bytes) -> None:
        nonlocal sealed_size
        out.write(data)
        sealed_hash.update(data)
        sealed_size += len(data)

    emit(encryptor.header)
    for piece in item.chunks():
        if not isinstance(piece, bytes | bytearray | memoryview):
            raise BundleError(f"the chunks of {item.path!r} must be bytes")
        view = memoryview(piece).cast("B")
        size += len(view)
        if size > item.size:
            raise BundleItemChanged(f"{item.path!r} is longer than the {item.size} bytes the manifest lists")
        plain_hash.update(view)
        # Fed a chunk at a time: a large piece never makes a ciphertext of the same size in memory.
        for start in range(0, len(view), streaming.CHUNK_BYTES):
            emit(encryptor.update(bytes(view[start : start + streaming.CHUNK_BYTES])))
    if size != item.size:
        raise BundleItemChanged(f"{item.path!r} is {size} bytes, not the {item.size} the manifest lists")
    if plain_hash.hexdigest() != item.sha256:
        raise BundleItemChanged(f"{item.path!r} does not have the SHA-256 the manifest lists")
    emit(encryptor.finalize())
    return _IndexEntry(item.path, size, plain_hash.digest(), sealed_size, sealed_hash.digest())


def _encode_index(manifest: bytes, proof: bytes, entries: Sequence[_IndexEntry]) -> bytes:
    parts = [
        _LENGTH.pack(len(manifest)),
        manifest,
        _LENGTH.pack(len(proof)),
        proof,
        _LENGTH.pack(len(entries)),
    ]
    for entry in entries:
        path = entry.path.encode("ascii")
        parts += [
            _PATH_LENGTH.pack(len(path)),
            path,
            _ITEM_FIELDS.pack(entry.size, entry.sha256, entry.ciphertext_size, entry.ciphertext_sha256),
        ]
    return b"".join(parts)


# --- Reading -------------------------------------------------------------------------------------------


class _Reader:
    """Consumes a byte string field by field; _Malformed when it runs short."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._offset = 0

    def take(self, size: int, what: str) -> bytes:
        if self._offset + size > len(self._data):
            raise _Malformed(f"the index ends inside {what}")
        chunk = self._data[self._offset : self._offset + size]
        self._offset += size
        return chunk

    def length(self, what: str) -> int:
        (value,) = _LENGTH.unpack(self.take(_LENGTH.size, what))
        return int(value)

    @property
    def done(self) -> bool:
        return self._offset == len(self._data)


def _parse_index(data: bytes) -> tuple[bytes, bytes, list[_IndexEntry]]:
    reader = _Reader(data)
    manifest_size = reader.length("the manifest length")
    if manifest_size > MAX_MANIFEST_BYTES:
        raise _Malformed(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    manifest = reader.take(manifest_size, "the manifest")
    proof_size = reader.length("the proof length")
    if proof_size > MAX_PROOF_BYTES:
        raise _Malformed(f"the audit proof is larger than {MAX_PROOF_BYTES} bytes")
    proof = reader.take(proof_size, "the audit proof")
    count = reader.length("the item count")
    if count > MAX_ITEMS:
        raise _Malformed(f"the index lists {count} items; a bundle holds at most {MAX_ITEMS}")
    entries: list[_IndexEntry] = []
    for position in range(1, count + 1):
        what = f"item {position}"
        (path_size,) = _PATH_LENGTH.unpack(reader.take(_PATH_LENGTH.size, what))
        raw_path = reader.take(path_size, what)
        path = raw_path.decode("ascii", errors="replace")
        problem = _path_problem(path)
        if problem is not None:
            raise _Malformed(problem)
        size, digest, sealed_size, sealed_digest = _ITEM_FIELDS.unpack(reader.take(_ITEM_FIELDS.size, what))
        if size > MAX_ITEM_BYTES or sealed_size != ciphertext_size(size):
            raise _Malformed(f"the sizes listed for {path!r} do not agree")
        entries.append(_IndexEntry(path, size, digest, sealed_size, sealed_digest))
    if not reader.done:
        raise _Malformed("the index has data after its last item")
    problem = _paths_problem([entry.path for entry in entries])
    if problem is not None:
        raise _Malformed(problem)
    return manifest, proof, entries


def _read_exactly(handle: BinaryIO, offset: int, size: int) -> bytes:
    handle.seek(offset)
    data = handle.read(size)
    if len(data) != size:
        raise _Malformed("the bundle changed while it was read")
    return data


def _ciphertext_digest(handle: BinaryIO, offset: int, size: int) -> bytes | None:
    """SHA-256 of ``size`` bytes at ``offset``, read in blocks; None if the file is shorter."""
    handle.seek(offset)
    digest = hashlib.sha256()
    remaining = size
    while remaining:
        block = handle.read(min(remaining, _READ_BLOCK))
        if not block:
            return None
        digest.update(block)
        remaining -= len(block)
    return digest.digest()


def _verify(
    handle: BinaryIO,
    private_key: sealing.PrivateKey,
    log_key: VerifierKey,
    witness_keys: Sequence[WitnessKey],
    witnesses_required: int,
    report: BundleReport,
) -> _Verified | None:
    """docs/referral-format.md, "Verifying", steps 1 to 11. Appends to ``report.problems``; returns what
    extraction needs once the index opened (check ``report.problems`` before using it)."""
    problems = report.problems
    # Steps 1 and 2: the header.
    size = os.fstat(handle.fileno()).st_size
    if size < _FIXED_HEADER.size + _RECIPIENT_ENTRY_BYTES + envelope.OVERHEAD_BYTES + _TRAILER.size:
        problems.append("the file is too short to be a referral bundle")
        return None
    magic, version, raw_id, count = _FIXED_HEADER.unpack(_read_exactly(handle, 0, _FIXED_HEADER.size))
    if magic != MAGIC:
        problems.append("the file is not a Daylight referral bundle")
        return None
    if version != VERSION:
        problems.append(f"the bundle is format version {version}; this program reads version {VERSION}")
        return None
    bundle_id = uuid.UUID(bytes=raw_id)
    report.bundle_id = bundle_id
    if not 1 <= count <= MAX_RECIPIENTS:
        problems.append(f"the bundle claims {count} recipients; a bundle has 1 to {MAX_RECIPIENTS}")
        return None
    header_size = _FIXED_HEADER.size + count * _RECIPIENT_ENTRY_BYTES
    if header_size + envelope.OVERHEAD_BYTES + _TRAILER.size > size:
        problems.append("the file is too short for the recipients its header lists")
        return None
    header = _read_exactly(handle, 0, header_size)
    sealed: dict[bytes, bytes] = {}
    for position in range(count):
        start = _FIXED_HEADER.size + position * _RECIPIENT_ENTRY_BYTES
        sealed[header[start : start + FINGERPRINT_BYTES]] = header[
            start + FINGERPRINT_BYTES : start + _RECIPIENT_ENTRY_BYTES
        ]
    digests = list(sealed)
    report.recipients = [format_fingerprint(digest) for digest in digests]
    if len(digests) != count or digests != sorted(digests):
        problems.append("the recipients are not listed once each in ascending order: the header was altered")
        return None

    # Step 3: the content key, from this recipient's entry.
    own = fingerprint_digest(private_key.public_key())
    if own not in sealed:
        problems.append(NOT_A_RECIPIENT)
        return None
    try:
        content_key = sealing.open_sealed(private_key, sealed[own], *_sealed_key_context(bundle_id, own))
    except DecryptionError:
        content_key = b""
    if len(content_key) != CONTENT_KEY_BYTES:
        problems.append("the key sealed to this recipient does not open: the bundle was altered or damaged")
        return None

    # Steps 4 to 6: the trailer, then the index.
    index_size, end_marker = _TRAILER.unpack(_read_exactly(handle, size - _TRAILER.size, _TRAILER.size))
    if end_marker != TRAILER_MAGIC:
        problems.append("the bundle does not end with its end marker: it was cut short or data was appended")
        return None
    if (
        not envelope.OVERHEAD_BYTES <= index_size <= MAX_INDEX_BYTES
        or header_size + index_size + _TRAILER.size > size
    ):
        problems.append("the index length in the trailer is impossible: the bundle was altered or damaged")
        return None
    index_offset = size - _TRAILER.size - index_size
    sealed_index = _read_exactly(handle, index_offset, index_size)
    try:
        index = envelope.open_envelope(
            _index_key(content_key, bundle_id), sealed_index, header, key_version=INDEX_KEY_VERSION
        )
    except DecryptionError:
        problems.append("the index does not open: the bundle was altered or damaged")
        return None
    try:
        manifest, proof, entries = _parse_index(index)
    except _Malformed as exc:
        problems.append(f"the index is malformed: {exc}")
        return None
    report.items = [BundleEntry(entry.path, entry.size, entry.sha256.hex()) for entry in entries]

    # Step 7: the items fill the space between the header and the index exactly.
    offsets: list[int] = []
    position = header_size
    for entry in entries:
        offsets.append(position)
        position += entry.ciphertext_size
    if position != index_offset:
        problems.append(
            f"the items take {position - header_size} bytes but the bundle has {index_offset - header_size} "
            "between its header and its index: the bundle was altered or damaged"
        )
        return None

    # Step 8: the manifest lists exactly these items.
    parsed, referral_id, manifest_problems = _manifest_problems(
        manifest, [(entry.path, entry.size, entry.sha256.hex()) for entry in entries], report.recipients
    )
    report.manifest, report.referral_id = parsed, referral_id
    problems.extend(manifest_problems)

    # Steps 9 and 10: the proof verifies, and proves the approval of this manifest to these recipients.
    _check_proof(proof, manifest, referral_id, log_key, witness_keys, witnesses_required, report)

    # Step 11: each item's ciphertext is the one the index lists.
    for entry, offset in zip(entries, offsets, strict=True):
        if _ciphertext_digest(handle, offset, entry.ciphertext_size) != entry.ciphertext_sha256:
            problems.append(f"the item {entry.path!r} was altered or damaged (its ciphertext hash differs)")
    return _Verified(content_key, bundle_id, entries, offsets, manifest, proof)


def _check_proof(
    proof: bytes,
    manifest: bytes,
    referral_id: str | None,
    log_key: VerifierKey,
    witness_keys: Sequence[WitnessKey],
    witnesses_required: int,
    report: BundleReport,
) -> None:
    try:
        document = _strict_json(proof, "the audit proof")
    except _Malformed as exc:
        report.problems.append(str(exc))
        return
    proven = verify_event_proof(document, log_key, witness_keys, witnesses_required)
    report.problems.extend(f"audit proof: {problem}" for problem in proven.problems)
    if proven.checkpoint_time is not None:
        report.origin = log_key.name
        report.checkpoint_time = proven.checkpoint_time
    report.witnessed_by = proven.witnessed_by
    event = document.get("event") if isinstance(document, dict) else None
    report.problems.extend(_approval_problems(event, manifest, referral_id, report.recipients))
    if proven.ok and isinstance(event, dict) and isinstance(event.get("occurred_at"), str):
        report.approved_at = event["occurred_at"]


def _regular_file_problem(path: Path) -> str | None:
    """A FIFO or device would block or never end; refused before it is opened."""
    mode = path.stat().st_mode  # OSError (missing, unreadable) is the caller's to handle
    return None if stat.S_ISREG(mode) else f"{path} is not a regular file"


def verify_bundle(
    path: Path,
    private_key: sealing.PrivateKey,
    *,
    log_key: VerifierKey,
    witness_keys: Sequence[WitnessKey] = (),
    witnesses_required: int = 0,
) -> BundleReport:
    """Check every byte of the bundle at ``path`` without decrypting its items (docs/referral-format.md).

    A malformed, altered or foreign bundle is a report with problems, never an exception; so is a bundle
    not sealed to ``private_key`` ("this bundle is not sealed to this key"). Raises OSError when the file
    cannot be read, ValueError for a witness policy that cannot be met (duplicate witnesses, a quorum
    larger than the witnesses given).
    """
    _check_witness_policy(witness_keys, witnesses_required)
    report = BundleReport()
    problem = _regular_file_problem(path)
    if problem is not None:
        report.problems.append(problem)
        return report
    with path.open("rb") as handle:
        try:
            _verify(handle, private_key, log_key, witness_keys, witnesses_required, report)
        except _Malformed as exc:
            report.problems.append(str(exc))
    report.ok = not report.problems
    return report


# --- Opening -------------------------------------------------------------------------------------------

_DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


class _Region:
    """``size`` bytes of ``handle`` from ``offset``, read like a file (for decrypt_chunks)."""

    def __init__(self, handle: BinaryIO, offset: int, size: int) -> None:
        handle.seek(offset)
        self._handle = handle
        self._remaining = size

    def read(self, size: int = -1, /) -> bytes:
        wanted = self._remaining if size < 0 else min(size, self._remaining)
        data = self._handle.read(wanted)
        self._remaining -= len(data)
        return data


class _Extraction:
    """Files and folders written under one output folder, opened without following symlinks, so that
    a failed extraction can remove exactly what it wrote."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.files: list[tuple[tuple[str, ...], str]] = []
        self.folders: list[tuple[str, ...]] = []

    def folder(self, segments: tuple[str, ...], *, create: bool) -> int:
        """A descriptor of the folder ``segments`` below the root (the caller closes it)."""
        current = os.dup(self.root)
        try:
            for depth, name in enumerate(segments, start=1):
                if create:
                    try:
                        os.mkdir(name, 0o700, dir_fd=current)
                        self.folders.append(segments[:depth])
                    except FileExistsError:
                        pass  # made for an earlier item; opened below without following a link
                child = os.open(name, _DIRECTORY_FLAGS, dir_fd=current)
                os.close(current)
                current = child
        except BaseException:
            os.close(current)
            raise
        return current

    def write(self, path: str, pieces: Iterable[bytes], size: int, sha256: bytes) -> None:
        """Write ``pieces`` to ``path`` under a temporary name, check size and hash, then rename."""
        *parents, name = path.split("/")
        folder = self.folder(tuple(parents), create=True)
        try:
            temporary = name + _PARTIAL_SUFFIX
            descriptor = os.open(temporary, _NEW_FILE_FLAGS, 0o600, dir_fd=folder)
            self.files.append((tuple(parents), temporary))
            digest = hashlib.sha256()
            written = 0
            with os.fdopen(descriptor, "wb") as sink:
                for piece in pieces:
                    sink.write(piece)
                    digest.update(piece)
                    written += len(piece)
                sink.flush()
                os.fsync(sink.fileno())
            if written != size or digest.digest() != sha256:
                raise _Malformed(f"the item {path!r} does not decrypt to the size and SHA-256 listed for it")
            try:
                os.stat(name, dir_fd=folder, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                raise BundleOutputError(f"{path} appeared in the output folder while the bundle was opened")
            os.rename(temporary, name, src_dir_fd=folder, dst_dir_fd=folder)
            self.files[-1] = (tuple(parents), name)
        finally:
            os.close(folder)

    def remove_everything(self) -> None:
        for parents, name in reversed(self.files):
            try:
                folder = self.folder(parents, create=False)
            except OSError:
                continue
            try:
                os.unlink(name, dir_fd=folder)
            except OSError:
                pass
            finally:
                os.close(folder)
        for segments in reversed(self.folders):
            try:
                folder = self.folder(segments[:-1], create=False)
            except OSError:
                continue
            try:
                os.rmdir(segments[-1], dir_fd=folder)
            except OSError:
                pass
            finally:
                os.close(folder)


def _prepare_output(out_dir: Path) -> bool:
    """Refuse an output folder that is not an empty folder; True if it does not exist yet."""
    try:
        mode = out_dir.lstat().st_mode
    except FileNotFoundError:
        if not out_dir.parent.is_dir():
            raise BundleOutputError(f"{out_dir.parent} is not an existing folder") from None
        return True
    if stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
        raise BundleOutputError(f"{out_dir} exists and is not a folder")
    if any(out_dir.iterdir()):
        raise BundleOutputError(f"{out_dir} is not empty; give a new or empty folder")
    return False


def _decrypted(handle: BinaryIO, verified: _Verified, position: int) -> Iterator[bytes]:
    entry = verified.entries[position]
    yield from streaming.decrypt_chunks(
        _Region(handle, verified.offsets[position], entry.ciphertext_size),
        _item_key(verified.content_key, verified.bundle_id, position),
        _item_aad(verified.bundle_id, position, entry.path),
    )


class ItemChangedWhileRead(Exception):
    """An item's plaintext did not hash to its index entry while it was read: the file changed (or was
    damaged) after it was verified. Whatever the caller made of the item must be thrown away."""


@contextlib.contextmanager
def read_bundle(
    path: Path,
    private_key: sealing.PrivateKey,
    *,
    log_key: VerifierKey,
    witness_keys: Sequence[WitnessKey] = (),
    witnesses_required: int = 0,
) -> Iterator[tuple[BundleReport, Iterator[tuple[BundleEntry, Iterator[bytes]]]]]:
    """Verify the bundle at ``path`` (as `verify_bundle`) and, when it holds, offer its items to read
    one after the other, decrypted as they are read, never on disk: for a program that stores them
    at once under its own keys (a second Daylight importing a referral, app.referrals.importing).

    Each item's chunks are checked against its SHA-256 as they stream: DecryptionError or
    ItemChangedWhileRead is raised from the chunk iterator at the first chunk that fails or at the
    end, so the caller's transaction rolls back. The items iterator is empty unless the report is ok.
    """
    _check_witness_policy(witness_keys, witnesses_required)
    report = BundleReport()
    problem = _regular_file_problem(path)
    if problem is not None:
        report.problems.append(problem)
        yield report, iter(())
        return
    with path.open("rb") as handle:
        try:
            verified = _verify(handle, private_key, log_key, witness_keys, witnesses_required, report)
        except _Malformed as exc:
            report.problems.append(str(exc))
            verified = None
        report.ok = not report.problems
        if verified is None or not report.ok:
            yield report, iter(())
            return
        report.manifest_sha256 = hashlib.sha256(verified.manifest).hexdigest()

        def checked(position: int) -> Iterator[bytes]:
            assert verified is not None  # noqa: S101 - only offered once verified
            entry = verified.entries[position]
            digest, size = hashlib.sha256(), 0
            for chunk in _decrypted(handle, verified, position):
                digest.update(chunk)
                size += len(chunk)
                yield chunk
            if size != entry.size or digest.digest() != entry.sha256:
                raise ItemChangedWhileRead(entry.path)

        def items() -> Iterator[tuple[BundleEntry, Iterator[bytes]]]:
            assert verified is not None  # noqa: S101 - only offered once verified
            for position, entry in enumerate(verified.entries):
                yield BundleEntry(entry.path, entry.size, entry.sha256.hex()), checked(position)

        yield report, items()


def open_bundle(
    path: Path,
    private_key: sealing.PrivateKey,
    out_dir: Path,
    *,
    log_key: VerifierKey,
    witness_keys: Sequence[WitnessKey] = (),
    witnesses_required: int = 0,
) -> BundleReport:
    """Verify the bundle at ``path`` (as `verify_bundle`), then decrypt each item to ``out_dir/<path>``
    and write ``manifest.json`` (the manifest's exact bytes) and ``audit-proof.json`` (the event proof,
    which `daylight audit verify --proof` checks on its own) beside them.

    Nothing is written unless the whole bundle verified. ``out_dir`` must be a new folder (its parent
    existing) or an empty one; files are created 0600 under temporary names, checked against their
    SHA-256, then renamed. If anything fails, everything written is removed and the report says why.
    Raises BundleOutputError for an unusable ``out_dir`` or a write that failed (disk full), OSError
    when the bundle cannot be read, ValueError for an impossible witness policy.
    """
    _check_witness_policy(witness_keys, witnesses_required)
    create = _prepare_output(out_dir)
    report = BundleReport()
    problem = _regular_file_problem(path)
    if problem is not None:
        report.problems.append(problem)
        return report
    with path.open("rb") as handle:
        try:
            verified = _verify(handle, private_key, log_key, witness_keys, witnesses_required, report)
        except _Malformed as exc:
            report.problems.append(str(exc))
            verified = None
        if verified is not None and not report.problems:
            _extract(handle, verified, out_dir, create, report)
    report.ok = not report.problems
    return report


def _extract(
    handle: BinaryIO, verified: _Verified, out_dir: Path, create: bool, report: BundleReport
) -> None:
    try:
        if create:
            out_dir.mkdir(mode=0o700)
        root = os.open(out_dir, _DIRECTORY_FLAGS)
    except OSError as exc:
        raise BundleOutputError(f"cannot use {out_dir}: {exc.strerror or exc}") from None
    extraction = _Extraction(root)
    finished = False
    try:
        if os.listdir(root):
            raise BundleOutputError(f"{out_dir} is no longer empty")
        for position, entry in enumerate(verified.entries):
            extraction.write(entry.path, _decrypted(handle, verified, position), entry.size, entry.sha256)
        for name, data in ((MANIFEST_FILE, verified.manifest), (PROOF_FILE, verified.proof)):
            extraction.write(name, [data], len(data), hashlib.sha256(data).digest())
        finished = True
    except DecryptionError:
        report.problems.append(
            "an item does not decrypt: the bundle was altered or damaged while it was opened"
        )
    except _Malformed as exc:
        report.problems.append(str(exc))
    except BundleOutputError:
        raise
    except OSError as exc:
        raise BundleOutputError(f"cannot write into {out_dir}: {exc.strerror or exc}") from None
    finally:
        if not finished:
            extraction.remove_everything()
        os.close(root)
        if create and not finished:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
