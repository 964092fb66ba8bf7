"""Referral bundles (app.referrals.bundle) and recipient keys (app.referrals.keys), without a database.

The approval's event proof is built as the server builds it (app.audit_log.proofs.prove_event), from its
parts: a small log of events, one of them the referral's approval, an RFC 9162 tree over their canonical
entries, a checkpoint signed by the log key and cosigned by two witnesses.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import stat
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit_log.checkpoint import Checkpoint, VerifierKey, sign_checkpoint
from app.audit_log.cosignature import WitnessKey, cosign, note_with_cosignatures
from app.audit_log.events import canonical_details, canonical_entry, format_time
from app.audit_log.evidence import EVENT_FIELDS, build_event_proof, verify_event_proof_text
from app.audit_log.merkle import InMemoryNodeStore, inclusion_proof, leaf_hash
from app.crypto import sealing, streaming
from app.crypto.errors import DecryptionError
from app.referrals import bundle, keys
from app.referrals.bundle import (
    BundleError,
    BundleItem,
    BundleItemChanged,
    BundleOutputError,
    BundleReport,
    WrittenBundle,
    open_bundle,
    verify_bundle,
    write_bundle,
)

ORIGIN = "daylight.test/audit"
LOG_PRIVATE = Ed25519PrivateKey.generate()
LOG_KEY = VerifierKey(ORIGIN, LOG_PRIVATE.public_key())
OTHER_LOG_PRIVATE = Ed25519PrivateKey.generate()
W1_PRIVATE, W2_PRIVATE = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
W1 = WitnessKey("witness.test/w1", W1_PRIVATE.public_key())
W2 = WitnessKey("witness.test/w2", W2_PRIVATE.public_key())
WITNESSES = [(W1, W1_PRIVATE), (W2, W2_PRIVATE)]
RECIPIENT_A = sealing.generate_private_key()
RECIPIENT_B = sealing.generate_private_key()
OUTSIDER = sealing.generate_private_key()
LEAD_ID = "6f1c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f"
CHECKPOINT_TIME = 1767268800
APPROVAL_SEQ = 4
TREE_SIZE = 6


# --- Building referrals as the server does --------------------------------------------------------------


def pattern(size: int, seed: str) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size) if size else b""


def uneven_pieces(data: bytes) -> Iterator[bytes]:
    """``data`` in pieces of varying sizes, smaller and larger than a streaming chunk."""
    sizes = (1, 1000, 70_000, 65_536, 200_000, 3)
    offset, turn = 0, 0
    while offset < len(data):
        size = sizes[turn % len(sizes)]
        yield data[offset : offset + size]
        offset += size
        turn += 1


def item_of(path: str, data: bytes) -> BundleItem:
    return BundleItem(
        path=path, size=len(data), sha256=hashlib.sha256(data).hexdigest(), chunks=lambda: uneven_pieces(data)
    )


def fingerprints(*private_keys: sealing.PrivateKey) -> list[str]:
    return [keys.fingerprint(key.public_key()) for key in private_keys]


def manifest_for(
    referral_id: str, items: Sequence[BundleItem], recipients: Sequence[str], **extra: Any
) -> bytes:
    document = {
        "format": bundle.MANIFEST_FORMAT,
        "referral_id": referral_id,
        "case": {"ref": "C-4F7K", "title": "Surveillance of a diaspora association"},
        "recipients": [
            {"name": f"Recipient {number}", "fingerprint": fingerprint}
            for number, fingerprint in enumerate(recipients, start=1)
        ],
        "items": [
            {
                "path": item.path,
                "size": item.size,
                "sha256": item.sha256,
                "kind": "attachment",
                "source": "R-7QX2",
            }
            for item in items
        ],
        "redactions": [{"item": "reports/R-7QX2/narrative.txt", "reason": "names a relative"}],
        "station_links": [{"station": "Rotterdam", "relation": "reported near"}],
        "cover_note": "For your unit's review.",
        "proposed_by": "amira",
        "approved_by": "lead-jo",
        "approved_on": "2026-01-01",
        **extra,
    }
    return json.dumps(document, ensure_ascii=False, indent=1).encode()


def log_event(seq: int, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "seq": seq,
        "occurred_at": format_time(dt.datetime(2026, 1, 1, 12, 0, seq, 1000 * seq, tzinfo=dt.UTC)),
        "actor_id": LEAD_ID,
        "actor": "lead-jo",
        "role": "lead",
        "action": "case.viewed",
        "object_type": "case",
        "object_id": f"case-{seq}",
        "outcome": "success",
        "details": "{}",
    }
    event.update(fields)
    return event


def approval_proof(
    manifest: bytes,
    referral_id: str,
    recipients: Sequence[str],
    *,
    log_private: Ed25519PrivateKey = LOG_PRIVATE,
    witnesses: Sequence[tuple[WitnessKey, Ed25519PrivateKey]] = WITNESSES,
    **event_fields: Any,
) -> dict[str, object]:
    """The proof document of a `referral.approve` event in a log of TREE_SIZE events, as prove_event
    gives it: the event, its inclusion proof, a signed and cosigned checkpoint."""
    details = canonical_details(
        {"manifest_sha256": hashlib.sha256(manifest).hexdigest(), "recipients": list(recipients)}
    )
    fields = {
        "action": "referral.approve",
        "object_type": "referral",
        "object_id": referral_id,
        "details": details,
    }
    approval = log_event(APPROVAL_SEQ, **{**fields, **event_fields})
    events = [approval if seq == APPROVAL_SEQ else log_event(seq) for seq in range(1, TREE_SIZE + 1)]
    store = InMemoryNodeStore(
        leaf_hash(canonical_entry(*(event[name] for name in EVENT_FIELDS))) for event in events
    )
    checkpoint = Checkpoint(origin=ORIGIN, tree_size=TREE_SIZE, root_hash=store.root(), time=CHECKPOINT_TIME)
    note = note_with_cosignatures(
        sign_checkpoint(checkpoint, log_private),
        [cosign(checkpoint, private, key.name, CHECKPOINT_TIME + 5) for key, private in witnesses],
    )
    return build_event_proof(approval, TREE_SIZE, inclusion_proof(store, APPROVAL_SEQ - 1, TREE_SIZE), note)


SMALL_CONTENTS = {
    "reports/R-7QX2/narrative.txt": "Narrative — with ünïcode.\n".encode(),
    "reports/R-7QX2/empty.txt": b"",
    "case/C-4F7K/summary.md": b"# Summary\n",
}


def referral_parts(
    contents: dict[str, bytes], recipients: Sequence[sealing.PrivateKey], **proof_options: Any
) -> tuple[str, bytes, dict[str, object], list[BundleItem]]:
    referral_id = str(uuid.uuid4())
    items = [item_of(path, data) for path, data in contents.items()]
    manifest = manifest_for(referral_id, items, fingerprints(*recipients))
    proof = approval_proof(manifest, referral_id, fingerprints(*recipients), **proof_options)
    return referral_id, manifest, proof, items


def write_to(
    path: Path,
    contents: dict[str, bytes] = SMALL_CONTENTS,
    recipients: Sequence[sealing.PrivateKey] = (RECIPIENT_A, RECIPIENT_B),
    **proof_options: Any,
) -> tuple[str, WrittenBundle]:
    referral_id, manifest, proof, items = referral_parts(contents, recipients, **proof_options)
    with path.open("wb") as sink:
        written = write_bundle(
            sink,
            bundle_id=uuid.uuid4(),
            manifest=manifest,
            proof=proof,
            items=items,
            recipients=[key.public_key() for key in recipients],
        )
    return referral_id, written


def check(path: Path, key: sealing.PrivateKey = RECIPIENT_A, **options: Any) -> BundleReport:
    options.setdefault("witness_keys", [W1, W2])
    options.setdefault("witnesses_required", 2)
    return verify_bundle(path, key, log_key=LOG_KEY, **options)


def open_into(path: Path, out_dir: Path, key: sealing.PrivateKey = RECIPIENT_A) -> BundleReport:
    return open_bundle(path, key, out_dir, log_key=LOG_KEY, witness_keys=[W1, W2], witnesses_required=2)


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bundles") / "small.daylight-referral"
    write_to(path)
    return path


# --- Round trip -----------------------------------------------------------------------------------------


def test_each_recipient_verifies_and_opens_the_bundle(tmp_path: Path) -> None:
    contents = {
        "reports/R-7QX2/narrative.txt": "Narrative — ünïcode.\n".encode(),
        "reports/R-7QX2/recording.ogg": pattern(3 * 1024 * 1024 + 17, "recording"),
        "reports/R-7QX2/exact-chunk.bin": pattern(streaming.CHUNK_BYTES, "chunk"),
        "reports/R-7QX2/empty.txt": b"",
        "case/C-4F7K/summary.md": b"# Summary\n",
    }
    path = tmp_path / "referral.daylight-referral"
    referral_id, written = write_to(path, contents)

    assert written == WrittenBundle(hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_size)
    for number, key in enumerate((RECIPIENT_A, RECIPIENT_B)):
        report = check(path, key)
        assert report.ok, report.problems
        assert report.referral_id == referral_id
        assert report.origin == ORIGIN
        assert report.approved_at == "2026-01-01T12:00:04.004000Z"
        assert report.checkpoint_time == CHECKPOINT_TIME
        assert report.witnessed_by == [W1.name, W2.name]
        assert sorted(report.recipients) == sorted(fingerprints(RECIPIENT_A, RECIPIENT_B))
        assert [(entry.path, entry.size) for entry in report.items] == [
            (name, len(data)) for name, data in contents.items()
        ]
        assert report.manifest is not None
        assert report.manifest["referral_id"] == referral_id

        out_dir = tmp_path / f"opened-{number}"
        opened = open_into(path, out_dir, key)
        assert opened.ok, opened.problems
        for name, data in contents.items():
            extracted = out_dir / name
            assert extracted.read_bytes() == data
            assert stat.S_IMODE(extracted.stat().st_mode) == 0o600
        files = {str(p.relative_to(out_dir)) for p in out_dir.rglob("*") if p.is_file()}
        assert files == {*contents, "manifest.json", "audit-proof.json"}
        manifest = json.loads((out_dir / "manifest.json").read_bytes())
        assert manifest["referral_id"] == referral_id
        # The proof stands on its own: `daylight audit verify --proof` reads the same file.
        proof_text = (out_dir / "audit-proof.json").read_bytes()
        assert verify_event_proof_text(proof_text, LOG_KEY, [W1, W2], 2).ok


def test_the_manifest_is_extracted_byte_for_byte(small_bundle: Path, tmp_path: Path) -> None:
    report = open_into(small_bundle, tmp_path / "out")
    assert report.ok, report.problems
    manifest = (tmp_path / "out" / "manifest.json").read_bytes()
    details = json.loads(json.loads((tmp_path / "out" / "audit-proof.json").read_bytes())["event"]["details"])
    assert hashlib.sha256(manifest).hexdigest() == details["manifest_sha256"]


def test_a_bundle_with_no_items_verifies(tmp_path: Path) -> None:
    path = tmp_path / "empty.daylight-referral"
    write_to(path, {}, [RECIPIENT_A])
    report = check(path)
    assert report.ok, report.problems
    assert report.items == []


def test_the_sealed_key_has_the_size_the_format_states() -> None:
    sealed = sealing.seal_to(RECIPIENT_A.public_key(), bytes(32), "context")
    assert len(sealed) == bundle.SEALED_KEY_BYTES


def test_ciphertext_sizes_follow_the_streaming_format() -> None:
    for size in (0, 1, streaming.CHUNK_BYTES - 1, streaming.CHUNK_BYTES, streaming.CHUNK_BYTES + 1, 300_000):
        sink = io.BytesIO()
        streaming.encrypt_file(io.BytesIO(bytes(size)), sink, bytes(32), b"aad")
        assert len(sink.getvalue()) == bundle.ciphertext_size(size)


# --- Who can open it --------------------------------------------------------------------------------------


def test_a_key_that_is_not_a_recipient_cannot_verify(small_bundle: Path) -> None:
    report = check(small_bundle, OUTSIDER)
    assert not report.ok
    assert report.problems == ["this bundle is not sealed to this key"]
    assert report.manifest is None
    assert report.items == []
    # It still learns who can open it: the fingerprints are in the clear (docs/referral-format.md).
    assert sorted(report.recipients) == sorted(fingerprints(RECIPIENT_A, RECIPIENT_B))


def test_a_key_that_is_not_a_recipient_cannot_open(small_bundle: Path, tmp_path: Path) -> None:
    report = open_into(small_bundle, tmp_path / "out", OUTSIDER)
    assert report.problems == ["this bundle is not sealed to this key"]
    assert not (tmp_path / "out").exists()


# --- Every byte is covered --------------------------------------------------------------------------------


def structural_offsets(size: int, recipients: int) -> set[int]:
    header = 22 + recipients * (32 + bundle.SEALED_KEY_BYTES)
    return {0, 3, 4, 5, 20, 21, 22, header - 1, header, size - 9, size - 8, size - 5, size - 4, size - 1}


def test_changing_any_byte_fails_verification(small_bundle: Path, tmp_path: Path) -> None:
    original = small_bundle.read_bytes()
    path = tmp_path / "flipped"
    path.write_bytes(original)
    passed: list[int] = []
    with path.open("r+b") as handle:
        for offset in range(len(original)):
            handle.seek(offset)
            handle.write(bytes([original[offset] ^ 0x01]))
            handle.flush()
            if check(path).ok:
                passed.append(offset)
            handle.seek(offset)
            handle.write(original[offset : offset + 1])
            handle.flush()
    assert passed == [], f"{len(passed)} altered offsets still verify, first {passed[:10]}"
    assert check(path).ok  # restored, the same file verifies again


def test_each_recipient_entry_is_covered_for_the_other(small_bundle: Path, tmp_path: Path) -> None:
    # B's sealed key means nothing to A, yet A's check refuses a bundle where it was changed.
    original = bytearray(small_bundle.read_bytes())
    for offset in structural_offsets(len(original), 2) | {22 + 32 + bundle.SEALED_KEY_BYTES + 40}:
        altered = bytearray(original)
        altered[offset] ^= 0x80
        path = tmp_path / f"altered-{offset}"
        path.write_bytes(bytes(altered))
        assert not check(path, RECIPIENT_A).ok, offset
        assert not check(path, RECIPIENT_B).ok, offset


@pytest.mark.parametrize("cut", [1, 4, 8, 9, 100, 1000])
def test_a_truncated_bundle_fails(small_bundle: Path, tmp_path: Path, cut: int) -> None:
    path = tmp_path / "cut"
    path.write_bytes(small_bundle.read_bytes()[:-cut])
    report = check(path)
    assert not report.ok


def test_a_bundle_cut_to_its_header_fails(small_bundle: Path, tmp_path: Path) -> None:
    data = small_bundle.read_bytes()
    for size in (0, 4, 21, 22 + 2 * (32 + bundle.SEALED_KEY_BYTES)):
        path = tmp_path / f"cut-{size}"
        path.write_bytes(data[:size])
        assert not check(path).ok


@pytest.mark.parametrize("extra", [b"\x00", b"trailing data", b"\x00\x00\x10\x00DLRE"])
def test_appended_bytes_fail(small_bundle: Path, tmp_path: Path, extra: bytes) -> None:
    path = tmp_path / "appended"
    path.write_bytes(small_bundle.read_bytes() + extra)
    report = check(path)
    assert not report.ok


def test_appended_bytes_with_a_moved_trailer_fail(small_bundle: Path, tmp_path: Path) -> None:
    # Data slipped in before the trailer, the trailer kept: the items no longer fill the gap exactly.
    data = small_bundle.read_bytes()
    path = tmp_path / "slipped"
    path.write_bytes(data[:-8] + b"\x00" * 16 + data[-8:])
    assert not check(path).ok


def test_a_file_that_is_not_a_bundle_fails(tmp_path: Path) -> None:
    path = tmp_path / "not-a-bundle"
    path.write_bytes(pattern(5000, "noise"))
    assert check(path).problems == ["the file is not a Daylight referral bundle"]
    path.write_bytes(b"")
    assert check(path).problems == ["the file is too short to be a referral bundle"]


# --- The approval must prove this manifest, these recipients, this referral -----------------------------


@pytest.fixture
def hostile_writer(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """A writer that skips its own coherence checks, as a compromised or buggy server would."""

    def write(
        path: Path, manifest: bytes, proof: dict[str, object], items: list[BundleItem], **kwargs: Any
    ) -> Path:
        recipients = kwargs.get("recipients", [RECIPIENT_A.public_key(), RECIPIENT_B.public_key()])
        with monkeypatch.context() as patched:
            patched.setattr(bundle, "_approval_problems", lambda *_args: [])
            patched.setattr(
                bundle, "_manifest_problems", kwargs.get("manifest_check", bundle._manifest_problems)
            )
            patched.setattr(bundle, "_path_problem", kwargs.get("path_check", bundle._path_problem))
            with path.open("wb") as sink:
                write_bundle(
                    sink,
                    bundle_id=uuid.uuid4(),
                    manifest=manifest,
                    proof=proof,
                    items=items,
                    recipients=recipients,
                )
        return path

    return write


def test_the_writer_refuses_a_manifest_the_event_does_not_prove() -> None:
    _, manifest, proof, items = referral_parts(SMALL_CONTENTS, [RECIPIENT_A, RECIPIENT_B])
    changed = manifest.replace(b"For your unit", b"For any unit")
    with pytest.raises(BundleError, match="not the one the lead approved"):
        write_bundle(
            io.BytesIO(),
            bundle_id=uuid.uuid4(),
            manifest=changed,
            proof=proof,
            items=items,
            recipients=[RECIPIENT_A.public_key(), RECIPIENT_B.public_key()],
        )


def test_a_manifest_the_event_does_not_prove_fails(
    tmp_path: Path, hostile_writer: Callable[..., Path]
) -> None:
    _, manifest, proof, items = referral_parts(SMALL_CONTENTS, [RECIPIENT_A, RECIPIENT_B])
    changed = manifest.replace(b"For your unit", b"For any unit")
    report = check(hostile_writer(tmp_path / "b", changed, proof, items))
    assert not report.ok
    assert report.problems == [
        "the manifest is not the one the lead approved (its SHA-256 differs from the event's)"
    ]


def test_a_recipient_the_lead_did_not_approve_fails(
    tmp_path: Path, hostile_writer: Callable[..., Path]
) -> None:
    referral_id = str(uuid.uuid4())
    items = [item_of(path, data) for path, data in SMALL_CONTENTS.items()]
    manifest = manifest_for(referral_id, items, fingerprints(RECIPIENT_A, OUTSIDER))
    proof = approval_proof(manifest, referral_id, fingerprints(RECIPIENT_A))
    with pytest.raises(BundleError, match="exactly the recipients the lead approved"):
        write_bundle(
            io.BytesIO(),
            bundle_id=uuid.uuid4(),
            manifest=manifest,
            proof=proof,
            items=items,
            recipients=[RECIPIENT_A.public_key(), OUTSIDER.public_key()],
        )
    path = hostile_writer(
        tmp_path / "b", manifest, proof, items, recipients=[RECIPIENT_A.public_key(), OUTSIDER.public_key()]
    )
    assert check(path).problems == ["the bundle is not sealed to exactly the recipients the lead approved"]


def test_the_approval_of_another_referral_fails(tmp_path: Path, hostile_writer: Callable[..., Path]) -> None:
    referral_id = str(uuid.uuid4())
    items = [item_of(path, data) for path, data in SMALL_CONTENTS.items()]
    manifest = manifest_for(referral_id, items, fingerprints(RECIPIENT_A, RECIPIENT_B))
    proof = approval_proof(
        manifest, referral_id, fingerprints(RECIPIENT_A, RECIPIENT_B), object_id=str(uuid.uuid4())
    )
    report = check(hostile_writer(tmp_path / "b", manifest, proof, items))
    assert report.problems == ["the proven approval is for another referral than the manifest's"]


def test_an_event_that_is_not_an_approval_fails(tmp_path: Path, hostile_writer: Callable[..., Path]) -> None:
    referral_id = str(uuid.uuid4())
    items = [item_of(path, data) for path, data in SMALL_CONTENTS.items()]
    manifest = manifest_for(referral_id, items, fingerprints(RECIPIENT_A, RECIPIENT_B))
    proof = approval_proof(
        manifest, referral_id, fingerprints(RECIPIENT_A, RECIPIENT_B), action="referral.propose"
    )
    report = check(hostile_writer(tmp_path / "b", manifest, proof, items))
    assert not report.ok
    assert "not 'referral.approve' on a referral" in report.problems[0]


def test_a_proof_signed_by_another_log_fails(tmp_path: Path) -> None:
    path = tmp_path / "b"
    write_to(path, log_private=OTHER_LOG_PRIVATE)
    report = check(path)
    assert not report.ok
    assert report.origin is None
    assert report.approved_at is None
    assert any(
        problem.startswith(f"audit proof: the checkpoint is not signed by the log {ORIGIN}")
        for problem in report.problems
    )


def test_a_witness_quorum_not_met_fails(tmp_path: Path) -> None:
    path = tmp_path / "b"
    write_to(path, witnesses=[(W1, W1_PRIVATE)])
    report = check(path)
    assert not report.ok
    assert report.problems == [
        "audit proof: 1 of the trusted witnesses cosigned the checkpoint; 2 are required"
    ]
    assert check(path, witnesses_required=1).ok


def test_an_impossible_witness_policy_is_the_callers_mistake(small_bundle: Path) -> None:
    with pytest.raises(ValueError, match="witnesses_required"):
        check(small_bundle, witnesses_required=3)
    with pytest.raises(ValueError, match="its own name"):
        check(small_bundle, witness_keys=[W1, W1], witnesses_required=1)


# --- Items: changed after approval, paths ---------------------------------------------------------------


def written_with(items: list[BundleItem]) -> None:
    referral_id = str(uuid.uuid4())
    manifest = manifest_for(referral_id, items, fingerprints(RECIPIENT_A))
    proof = approval_proof(manifest, referral_id, fingerprints(RECIPIENT_A))
    write_bundle(
        io.BytesIO(),
        bundle_id=uuid.uuid4(),
        manifest=manifest,
        proof=proof,
        items=items,
        recipients=[RECIPIENT_A.public_key()],
    )


@pytest.mark.parametrize(
    ("produced", "message"),
    [
        (b"the same size, other bytes!", "does not have the SHA-256"),
        (b"longer than what was approved, by far", "longer than"),
        (b"short", "is 5 bytes, not"),
    ],
)
def test_an_item_that_changed_after_approval_is_refused(produced: bytes, message: str) -> None:
    approved = b"the same size, other text!!"
    item = BundleItem(
        path="reports/R-7QX2/narrative.txt",
        size=len(approved),
        sha256=hashlib.sha256(approved).hexdigest(),
        chunks=lambda: iter([produced]),
    )
    with pytest.raises(BundleItemChanged, match=message):
        written_with([item])


BAD_PATHS = [
    "../escape.txt",
    "reports/../../escape.txt",
    "/etc/passwd",
    "reports//x.txt",
    "reports/./x.txt",
    "reports/",
    ".hidden",
    "reports/..",
    "reports\\x.txt",
    "reports/ünïcode.txt",
    "reports/x y.txt",
    "manifest.json",
    "AUDIT-PROOF.JSON/x",
    "",
    "a/" * 17 + "x",
    "x" * 101,
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_the_writer_refuses_unsafe_paths(path: str) -> None:
    with pytest.raises(BundleError):
        written_with([item_of(path, b"data")])


@pytest.mark.parametrize(
    ("first", "second"), [("a.txt", "A.TXT"), ("reports", "reports/x.txt"), ("d/x", "d/x")]
)
def test_the_writer_refuses_colliding_paths(first: str, second: str) -> None:
    with pytest.raises(BundleError):
        written_with([item_of(first, b"one"), item_of(second, b"two")])


@pytest.mark.parametrize("path", ["../escape.txt", "/etc/escape.txt", "a/../../escape.txt", "manifest.json"])
def test_the_reader_refuses_unsafe_paths(
    tmp_path: Path, hostile_writer: Callable[..., Path], path: str
) -> None:
    referral_id = str(uuid.uuid4())
    items = [item_of(path, b"planted")]
    manifest = manifest_for(referral_id, items, fingerprints(RECIPIENT_A, RECIPIENT_B))
    proof = approval_proof(manifest, referral_id, fingerprints(RECIPIENT_A, RECIPIENT_B))
    (tmp_path / "work").mkdir()
    bundle_path = hostile_writer(
        tmp_path / "work" / "b", manifest, proof, items, path_check=lambda _path: None
    )
    out_dir = tmp_path / "work" / "deep" / "out"
    out_dir.parent.mkdir()
    report = open_into(bundle_path, out_dir)
    assert not report.ok
    assert report.problems[0].startswith("the index is malformed: the item path")
    assert not out_dir.exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["b", "deep", "work"]


def test_the_reader_refuses_colliding_paths(tmp_path: Path, hostile_writer: Callable[..., Path]) -> None:
    referral_id = str(uuid.uuid4())
    items = [item_of("a.txt", b"one"), item_of("A.txt", b"two")]
    manifest = manifest_for(referral_id, items, fingerprints(RECIPIENT_A, RECIPIENT_B))
    proof = approval_proof(manifest, referral_id, fingerprints(RECIPIENT_A, RECIPIENT_B))
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(bundle, "_paths_problem", lambda _paths: None)
        path = hostile_writer(tmp_path / "b", manifest, proof, items)
    assert check(path).problems == ["the index is malformed: two items would be written to 'A.txt'"]


def test_the_manifest_must_list_exactly_the_items() -> None:
    referral_id = str(uuid.uuid4())
    items = [item_of(path, data) for path, data in SMALL_CONTENTS.items()]
    manifest = manifest_for(referral_id, items[:2], fingerprints(RECIPIENT_A))
    proof = approval_proof(manifest, referral_id, fingerprints(RECIPIENT_A))
    with pytest.raises(BundleError, match="the manifest lists 2 items; the bundle holds 3"):
        write_bundle(
            io.BytesIO(),
            bundle_id=uuid.uuid4(),
            manifest=manifest,
            proof=proof,
            items=items,
            recipients=[RECIPIENT_A.public_key()],
        )


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        (b"\xff not utf-8", "not UTF-8"),
        (b"[]", "not a JSON object"),
        (b'{"format": "daylight-referral-manifest/v2"}', "format"),
        (b'{"format": "daylight-referral-manifest/v1", "format": "daylight-referral-manifest/v1"}', "twice"),
        (b'{"format": "daylight-referral-manifest/v1", "referral_id": "X", "items": []}', "referral_id"),
    ],
)
def test_the_writer_refuses_a_malformed_manifest(manifest: bytes, message: str) -> None:
    proof = approval_proof(manifest, str(uuid.uuid4()), fingerprints(RECIPIENT_A))
    with pytest.raises(BundleError, match=message):
        write_bundle(
            io.BytesIO(),
            bundle_id=uuid.uuid4(),
            manifest=manifest,
            proof=proof,
            items=[],
            recipients=[RECIPIENT_A.public_key()],
        )


def test_the_writer_refuses_a_recipient_twice() -> None:
    _, manifest, proof, items = referral_parts(SMALL_CONTENTS, [RECIPIENT_A])
    with pytest.raises(BundleError, match="twice"):
        write_bundle(
            io.BytesIO(),
            bundle_id=uuid.uuid4(),
            manifest=manifest,
            proof=proof,
            items=items,
            recipients=[RECIPIENT_A.public_key(), RECIPIENT_A.public_key()],
        )


# --- Opening --------------------------------------------------------------------------------------------


def test_opening_refuses_a_folder_that_is_not_empty(small_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(BundleOutputError, match="not empty"):
        open_into(small_bundle, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["notes.txt"]


def test_opening_into_an_empty_folder_works(small_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    assert open_into(small_bundle, tmp_path / "out").ok


def test_opening_refuses_a_symlink_as_the_folder(small_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(BundleOutputError, match="not a folder"):
        open_into(small_bundle, tmp_path / "out")


def test_an_item_that_fails_to_decrypt_leaves_nothing_behind(
    small_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file changed between verification and decryption: the second item's stream breaks.
    real = bundle._decrypted

    def breaking(handle: Any, verified: Any, position: int) -> Iterator[bytes]:
        if position == 2:
            yield b"partial plaintext"
            raise DecryptionError
        yield from real(handle, verified, position)

    monkeypatch.setattr(bundle, "_decrypted", breaking)
    report = open_into(small_bundle, tmp_path / "out")
    assert not report.ok
    assert report.problems == [
        "an item does not decrypt: the bundle was altered or damaged while it was opened"
    ]
    assert not (tmp_path / "out").exists()


def test_an_item_that_fails_to_decrypt_empties_a_given_folder(
    small_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def breaking(*_args: Any) -> Iterator[bytes]:
        raise DecryptionError
        yield b""

    monkeypatch.setattr(bundle, "_decrypted", breaking)
    (tmp_path / "out").mkdir()
    assert not open_into(small_bundle, tmp_path / "out").ok
    assert list((tmp_path / "out").iterdir()) == []


def test_a_tampered_bundle_is_not_opened(small_bundle: Path, tmp_path: Path) -> None:
    data = bytearray(small_bundle.read_bytes())
    data[len(data) // 2] ^= 1
    path = tmp_path / "tampered"
    path.write_bytes(bytes(data))
    report = open_into(path, tmp_path / "out")
    assert not report.ok
    assert not (tmp_path / "out").exists()


# --- Memory ---------------------------------------------------------------------------------------------

BIG_ITEMS = {"attachments/video.mp4": 40 * 1024 * 1024 + 5, "attachments/archive.zip": 24 * 1024 * 1024 - 3}
PEAK_LIMIT = 16 * 1024 * 1024
BLOCK = pattern(1024 * 1024, "big")


def big_pieces(size: int) -> Iterator[bytes]:
    """``size`` bytes in 1 MiB pieces of one pattern, made on demand (nothing kept)."""
    while size > 0:
        yield BLOCK[: min(size, len(BLOCK))]
        size -= len(BLOCK)


def big_item(path: str, size: int) -> BundleItem:
    digest = hashlib.sha256()
    for piece in big_pieces(size):
        digest.update(piece)
    return BundleItem(path=path, size=size, sha256=digest.hexdigest(), chunks=lambda: big_pieces(size))


def traced_peak(work: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        baseline, _ = tracemalloc.get_traced_memory()
        work()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - baseline


def test_writing_and_opening_64_mb_stays_in_bounded_memory(tmp_path: Path) -> None:
    assert not tracemalloc.is_tracing()
    items = [big_item(path, size) for path, size in BIG_ITEMS.items()]
    referral_id = str(uuid.uuid4())
    manifest = manifest_for(referral_id, items, fingerprints(RECIPIENT_A))
    proof = approval_proof(manifest, referral_id, fingerprints(RECIPIENT_A))
    path = tmp_path / "big.daylight-referral"

    def write() -> None:
        with path.open("wb") as sink:
            write_bundle(
                sink,
                bundle_id=uuid.uuid4(),
                manifest=manifest,
                proof=proof,
                items=items,
                recipients=[RECIPIENT_A.public_key()],
            )

    reports: list[BundleReport] = []
    write_peak = traced_peak(write)
    open_peak = traced_peak(lambda: reports.append(open_into(path, tmp_path / "out")))

    assert reports[0].ok, reports[0].problems
    assert path.stat().st_size > sum(BIG_ITEMS.values())
    for name, size in BIG_ITEMS.items():
        assert (tmp_path / "out" / name).stat().st_size == size
    assert write_peak < PEAK_LIMIT, f"writing peaked at {write_peak} bytes"
    assert open_peak < PEAK_LIMIT, f"opening peaked at {open_peak} bytes"


# --- Recipient keys -------------------------------------------------------------------------------------


def test_a_fingerprint_is_16_groups_of_4_hex_digits() -> None:
    text = keys.fingerprint(RECIPIENT_A.public_key())
    groups = text.split(" ")
    assert [len(group) for group in groups] == [4] * 16
    assert text == text.upper()
    assert keys.parse_fingerprint(text) == keys.fingerprint_digest(RECIPIENT_A.public_key())
    assert keys.short_fingerprint(RECIPIENT_A.public_key()) == text[:19]
    assert keys.fingerprint(RECIPIENT_B.public_key()) != text


@pytest.mark.parametrize(
    "text", ["ABCD", "abcd " * 15 + "abcd", ("ABCD" * 16), "ABCD  " + "ABCD " * 14 + "ABCD"]
)
def test_only_the_written_form_of_a_fingerprint_parses(text: str) -> None:
    with pytest.raises(keys.RecipientKeyError):
        keys.parse_fingerprint(text)


def test_a_public_key_file_round_trips_with_a_name_that_has_spaces() -> None:
    private_key, text = keys.generate_recipient_key("Example Refugee Council — Casework")
    assert text.startswith("daylight-referral-public-key/v1 ")
    assert text.endswith(" Example Refugee Council — Casework\n")
    assert text.count("\n") == 1
    parsed = keys.parse_public_key(text)
    assert parsed.name == "Example Refugee Council — Casework"
    assert parsed.public_key == private_key.public_key()
    assert parsed.fingerprint == keys.fingerprint(private_key.public_key())
    assert keys.parse_public_key(text[:-1]) == parsed


def public_text() -> str:
    return keys.format_public_key("Partner", RECIPIENT_A.public_key())


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: public_text().replace("/v1", "/v2"), "one line"),
        (lambda: public_text() + "\n", "one line"),
        (lambda: public_text().replace(" Partner", " Partner\tName"), "printable"),
        (lambda: public_text().replace(" Partner", "  Partner"), "space"),
        (lambda: public_text().replace(" Partner", " Par\u202etner"), "printable"),
        (lambda: public_text().replace(" Partner", " " + "x" * 101), "1 to 100"),
        (lambda: public_text().replace(" ", " AAAA", 1), "is 1219 bytes, not 1216"),
        (lambda: keys.format_private_key(RECIPIENT_A), "private key file"),
    ],
)
def test_a_malformed_public_key_file_is_refused(make: Callable[[], str], message: str) -> None:
    with pytest.raises(keys.RecipientKeyError, match=message):
        keys.parse_public_key(make())


def test_a_public_key_with_non_canonical_base64_is_refused() -> None:
    prefix, encoded, name = public_text()[:-1].split(" ", 2)
    # 1216 bytes end in a one-byte group ("xx=="): the second character's low 4 bits are padding, so
    # flipping one of them decodes to the same key. Only the canonical spelling is accepted.
    assert encoded.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    padded = alphabet[alphabet.index(encoded[-3]) ^ 1]
    with pytest.raises(keys.RecipientKeyError, match="canonical base64"):
        keys.parse_public_key(f"{prefix} {encoded[:-3]}{padded}== {name}\n")
    with pytest.raises(keys.RecipientKeyError, match="base64"):
        keys.parse_public_key(f"{prefix} {encoded[:-2]} {name}\n")


def test_the_private_key_file_is_written_once_for_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "recipient.key"
    previous = os.umask(0o022)
    try:
        keys.write_private_key(path, RECIPIENT_A)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("daylight-referral-private-key/v1\n")
    assert keys.read_private_key(path) == RECIPIENT_A
    with pytest.raises(FileExistsError):
        keys.write_private_key(path, RECIPIENT_B)
    assert keys.read_private_key(path) == RECIPIENT_A


def test_a_private_key_is_never_written_through_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "target")
    with pytest.raises(FileExistsError):
        keys.write_private_key(tmp_path / "link", RECIPIENT_A)
    assert not (tmp_path / "target").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"daylight-referral-private-key/v1\n", "base64 line"),
        (b"daylight-referral-private-key/v1\nAAAA\n", "is 3 bytes, not 96"),
        (b"\xff\xfe", "ASCII"),
        (b"x" * 5000, "too large"),
    ],
)
def test_a_malformed_private_key_file_is_refused(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    with pytest.raises(keys.RecipientKeyError, match=message):
        keys.read_private_key(path)


def test_a_public_key_file_is_not_a_private_key(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(public_text())
    with pytest.raises(keys.RecipientKeyError, match="public key file"):
        keys.read_private_key(path)


def test_the_private_key_never_shows_in_its_repr() -> None:
    assert "redacted" in repr(keys.parse_private_key(keys.format_private_key(RECIPIENT_A)))
