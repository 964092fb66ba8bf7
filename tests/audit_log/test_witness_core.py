"""The witness core: tlog-witness add-checkpoint checks and the state file (app.audit_log.witness)."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Callable
from hashlib import sha256
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit_log.checkpoint import (
    Checkpoint,
    VerifierKey,
    checkpoint_body,
    parse_verifier_key,
    sign_checkpoint,
    verifier_key,
)
from app.audit_log.cosignature import WitnessKey, open_cosignature
from app.audit_log.merkle import InMemoryNodeStore, consistency_proof, leaf_hash
from app.audit_log.witness import (
    MAX_CONSISTENCY_PROOF_LINES,
    WitnessRefusal,
    WitnessRequestError,
    WitnessState,
    WitnessStateError,
    add_checkpoint,
    build_add_checkpoint_request,
    load_state,
    parse_add_checkpoint_request,
    save_state,
)

ORIGIN = "daylight.test/audit"
LOG_PRIVATE = Ed25519PrivateKey.generate()
LOG_KEY = VerifierKey(ORIGIN, LOG_PRIVATE.public_key())
WITNESS_NAME = "witness.test/w1"
WITNESS_PRIVATE = Ed25519PrivateKey.generate()
WITNESS_KEY = WitnessKey(WITNESS_NAME, WITNESS_PRIVATE.public_key())
NOW = 1700000500


class Log:
    """A log in memory: its events, its tree, its signed checkpoints and proofs."""

    def __init__(self, entries: list[bytes], key: Ed25519PrivateKey = LOG_PRIVATE, origin: str = ORIGIN):
        self.entries = entries
        self.key = key
        self.origin = origin

    def store(self, size: int) -> InMemoryNodeStore:
        return InMemoryNodeStore(leaf_hash(entry) for entry in self.entries[:size])

    def checkpoint(self, size: int, time: int = 1700000000) -> Checkpoint:
        return Checkpoint(origin=self.origin, tree_size=size, root_hash=self.store(size).root(), time=time)

    def note(self, size: int, time: int = 1700000000) -> str:
        return sign_checkpoint(self.checkpoint(size, time), self.key)

    def request(self, old_size: int, size: int, time: int = 1700000000) -> str:
        proof = consistency_proof(self.store(size), old_size, size) if old_size <= size else []
        return build_add_checkpoint_request(old_size, proof, self.note(size, time))


def entries(count: int) -> list[bytes]:
    return [f"event {number}".encode() for number in range(1, count + 1)]


LOG = Log(entries(40))


def witness(state: WitnessState | None, request: str, now: int = NOW) -> tuple[WitnessState, str]:
    return add_checkpoint(state, request, LOG_KEY, WITNESS_PRIVATE, WITNESS_NAME, now)


def refusal(state: WitnessState | None, request: str) -> WitnessRefusal:
    with pytest.raises(WitnessRefusal) as raised:
        witness(state, request)
    return raised.value


def state_at(size: int) -> WitnessState:
    state, _ = witness(None, LOG.request(0, size))
    return state


# --- Accepting ---------------------------------------------------------------------------------------------


def test_first_contact_accepts_any_log_signed_checkpoint() -> None:
    state, line = witness(None, LOG.request(0, 5))
    assert (state.tree_size, state.root_hash) == (5, LOG.store(5).root())
    assert state.log_origin == ORIGIN
    assert state.log_verifier_key == verifier_key(LOG_KEY.public_key, ORIGIN)
    assert state.signed_note == LOG.note(5)
    assert open_cosignature(LOG.checkpoint(5), line, WITNESS_KEY) == NOW


@pytest.mark.parametrize(("old", "new"), [(5, 9), (1, 2), (4, 8), (3, 40), (7, 8), (8, 9), (16, 33)])
def test_growth_with_a_valid_proof_is_cosigned(old: int, new: int) -> None:
    state, line = witness(state_at(old), LOG.request(old, new), now=NOW + 1)
    assert (state.tree_size, state.root_hash) == (new, LOG.store(new).root())
    assert open_cosignature(LOG.checkpoint(new), line, WITNESS_KEY) == NOW + 1


def test_growth_from_an_empty_tree() -> None:
    state, _ = witness(None, LOG.request(0, 0))
    assert state.tree_size == 0
    state, _ = witness(state, LOG.request(0, 3))
    assert state.tree_size == 3


def test_the_same_size_and_root_again_earns_a_fresh_cosignature() -> None:
    state = state_at(5)
    again, line = witness(state, LOG.request(5, 5, time=1700000100), now=NOW + 60)
    assert (again.tree_size, again.root_hash) == (state.tree_size, state.root_hash)
    assert again.signed_note == LOG.note(5, time=1700000100)  # the newest note is kept
    assert open_cosignature(LOG.checkpoint(5, time=1700000100), line, WITNESS_KEY) == NOW + 60


def test_other_signature_lines_are_ignored() -> None:
    other = Ed25519PrivateKey.generate()
    note = LOG.note(5)
    foreign = sign_checkpoint(LOG.checkpoint(5), other).split("\n\n")[1]
    request = build_add_checkpoint_request(0, [], note + foreign)
    state, _ = witness(None, request)
    assert state.tree_size == 5


# --- Refusing ----------------------------------------------------------------------------------------------


def test_rollback_is_refused_with_both_notes_as_evidence() -> None:
    state = state_at(9)
    refused = refusal(state, LOG.request(9, 5))
    assert refused.kind == "rollback"
    assert refused.evidence == [state.signed_note, LOG.note(5)]
    assert refusal(state, LOG.request(5, 5)).kind == "rollback"  # whatever old size it claims


def test_a_rewritten_log_resigned_with_the_same_key_is_refused_as_a_fork() -> None:
    state = state_at(5)
    rewritten_entries = list(LOG.entries)
    rewritten_entries[2] = b"event 3, quietly edited"
    rewritten = Log(rewritten_entries)  # same log key, same origin

    same_size = refusal(state, rewritten.request(5, 5))
    assert same_size.kind == "fork"
    assert "two different trees of 5 leaves" in same_size.message
    assert same_size.evidence == [state.signed_note, rewritten.note(5)]

    grown = refusal(state, rewritten.request(5, 9))  # a proof from the rewritten tree cannot match
    assert grown.kind == "fork"
    assert grown.evidence == [state.signed_note, rewritten.note(9)]


def test_a_rewrite_after_the_witnessed_size_is_accepted() -> None:
    # The witness vouches for the history it saw; events after it are new to it.
    state = state_at(5)
    later_entries = list(LOG.entries)
    later_entries[7] = b"event 8, different"
    new_state, _ = witness(state, Log(later_entries).request(5, 9))
    assert new_state.tree_size == 9


@pytest.mark.parametrize("position", [0, 1, -1])
def test_a_corrupted_proof_is_refused(position: int) -> None:
    state = state_at(5)
    proof = consistency_proof(LOG.store(9), 5, 9)
    proof[position] = sha256(proof[position]).digest()
    refused = refusal(state, build_add_checkpoint_request(5, proof, LOG.note(9)))
    assert refused.kind == "fork"


def test_a_truncated_or_padded_proof_is_refused() -> None:
    state = state_at(5)
    proof = consistency_proof(LOG.store(9), 5, 9)
    for wrong in (proof[:-1], [*proof, bytes(32)], []):
        assert refusal(state, build_add_checkpoint_request(5, wrong, LOG.note(9))).kind == "fork"


def test_a_proof_where_none_belongs_is_refused() -> None:
    # From size 0 the proof must be empty (build refuses that, so assemble the request by hand).
    request = f"old 0\n{base64.b64encode(bytes(32)).decode()}\n\n{LOG.note(5)}"
    assert refusal(None, request).kind == "bad_proof"
    state = state_at(5)
    same_size = build_add_checkpoint_request(5, [bytes(32)], LOG.note(5))
    assert refusal(state, same_size).kind == "bad_proof"


def test_a_bad_signature_is_refused_without_evidence() -> None:
    state = state_at(5)
    by_other_key = Log(LOG.entries, key=Ed25519PrivateKey.generate())
    refused = refusal(state, by_other_key.request(5, 9))
    assert refused.kind == "bad_signature"
    assert refused.evidence == []  # a note the log did not sign proves nothing about the log

    # A log-signed note whose root was edited afterwards.
    note = LOG.note(9)
    edited = note.replace(
        base64.b64encode(LOG.store(9).root()).decode(), base64.b64encode(LOG.store(8).root()).decode()
    )
    assert edited != note
    request = build_add_checkpoint_request(5, consistency_proof(LOG.store(9), 5, 9), edited)
    assert refusal(state, request).kind == "bad_signature"


def test_another_origin_is_refused() -> None:
    other_key = Ed25519PrivateKey.generate()
    other_log = Log(LOG.entries, key=other_key, origin="other.test/audit")
    assert refusal(None, other_log.request(0, 5)).kind == "wrong_log"
    # Same key, other origin: still not the log this witness follows.
    assert refusal(None, Log(LOG.entries, origin="other.test/audit").request(0, 5)).kind == "wrong_log"


def test_a_state_for_another_pinned_key_is_refused() -> None:
    state = state_at(5)
    rotated = VerifierKey(ORIGIN, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(WitnessRefusal) as raised:
        add_checkpoint(state, LOG.request(5, 9), rotated, WITNESS_PRIVATE, WITNESS_NAME, NOW)
    assert raised.value.kind == "wrong_log"


def test_an_old_size_mismatch_names_the_size_to_retry_with() -> None:
    state = state_at(5)
    refused = refusal(state, LOG.request(3, 9))
    assert refused.kind == "old_size_mismatch"
    assert refused.expected_old_size == 5
    assert refused.evidence == [state.signed_note, LOG.note(9)]
    first = refusal(None, LOG.request(3, 9))
    assert (first.kind, first.expected_old_size) == ("old_size_mismatch", 0)
    # A claimed old size beyond the new checkpoint is refused, never trusted.
    assert refusal(state, build_add_checkpoint_request(12, [bytes(32)], LOG.note(9))).kind == (
        "old_size_mismatch"
    )


def test_a_refusal_leaves_the_state_as_it_was() -> None:
    state = state_at(5)
    before = (state.tree_size, state.root_hash, state.signed_note)
    refusal(state, LOG.request(5, 3))
    assert (state.tree_size, state.root_hash, state.signed_note) == before
    new_state, _ = witness(state, LOG.request(5, 9))  # and the honest log carries on
    assert new_state.tree_size == 9


# --- The request format ------------------------------------------------------------------------------------


def test_request_round_trip() -> None:
    proof = consistency_proof(LOG.store(9), 5, 9)
    request = build_add_checkpoint_request(5, proof, LOG.note(9))
    lines = request.split("\n")
    assert lines[0] == "old 5"
    assert lines[1 : 1 + len(proof)] == [base64.b64encode(node).decode() for node in proof]
    assert lines[1 + len(proof)] == ""
    assert request.endswith("\n\n" + LOG.note(9))
    assert parse_add_checkpoint_request(request) == (5, proof, LOG.note(9))
    assert parse_add_checkpoint_request(LOG.request(0, 5)) == (0, [], LOG.note(5))


def test_exactly_63_proof_lines_parse() -> None:
    request = build_add_checkpoint_request(1, [bytes(32)] * MAX_CONSISTENCY_PROOF_LINES, LOG.note(9))
    assert len(parse_add_checkpoint_request(request)[1]) == 63


HASH_LINE = base64.b64encode(bytes(32)).decode()
NOTE = LOG.note(9)


@pytest.mark.parametrize(
    "request_text",
    [
        pytest.param(f"old 1\n{(HASH_LINE + chr(10)) * 64}\n{NOTE}", id="64 proof lines"),
        pytest.param(f"old 0\n{NOTE}", id="no blank line"),
        pytest.param(f"old 5\n{HASH_LINE}\n{NOTE}", id="no blank line after the proof"),
        pytest.param(f"old 5\n{HASH_LINE}\n", id="no checkpoint"),
        pytest.param("old 5", id="only an old line"),
        pytest.param("", id="empty"),
        pytest.param(f"old 05\n\n{NOTE}", id="leading zero"),
        pytest.param(f"old 00\n\n{NOTE}", id="double zero"),
        pytest.param(f"old +5\n\n{NOTE}", id="plus sign"),
        pytest.param(f"old -1\n\n{NOTE}", id="negative"),
        pytest.param(f"old  5\n\n{NOTE}", id="two spaces"),
        pytest.param(f"old 5 \n\n{NOTE}", id="trailing space"),
        pytest.param(f"old \u0665\n\n{NOTE}", id="arabic-indic digit"),
        pytest.param(f"old 9223372036854775808\n\n{NOTE}", id="old size above 2^63-1"),
        pytest.param(f"Old 5\n\n{NOTE}", id="capital O"),
        pytest.param(f"5\n\n{NOTE}", id="no old keyword"),
        pytest.param(f"old 5\r\n\r\n{NOTE}", id="CRLF"),
        pytest.param(f"old 5\n{HASH_LINE[:-1]}\n\n{NOTE}", id="unpadded base64"),
        pytest.param(f"old 5\n{HASH_LINE[:-2]}B=\n\n{NOTE}", id="non-canonical base64"),
        pytest.param(f"old 5\n{base64.b64encode(bytes(31)).decode()}\n\n{NOTE}", id="31-byte hash"),
        pytest.param(f"old 5\n{HASH_LINE} \n\n{NOTE}", id="space after a hash"),
        pytest.param(f"old 5\n\n{NOTE}trailing", id="trailing data"),
        pytest.param(f"old 5\n\n{checkpoint_body(LOG.checkpoint(9))}", id="unsigned checkpoint"),
        pytest.param(f"old 5\n\n\n{NOTE}", id="two blank lines"),
        pytest.param(f"old 5\n\n{NOTE.replace('time ', 'tim ')}", id="malformed checkpoint body"),
        pytest.param("old 5\n\n" + "x" * (1 << 20), id="too long"),
    ],
)
def test_malformed_requests_are_refused(request_text: str) -> None:
    with pytest.raises(WitnessRequestError):
        parse_add_checkpoint_request(request_text)
    with pytest.raises(WitnessRequestError):
        witness(state_at(5), request_text)


def test_build_refuses_what_parse_would_refuse() -> None:
    with pytest.raises(WitnessRequestError, match="63"):
        build_add_checkpoint_request(1, [bytes(32)] * 64, NOTE)
    with pytest.raises(WitnessRequestError, match="32 bytes"):
        build_add_checkpoint_request(5, [bytes(31)], NOTE)
    with pytest.raises(WitnessRequestError, match="empty"):
        build_add_checkpoint_request(0, [bytes(32)], NOTE)
    for old_size in (-1, 2**63, True):
        with pytest.raises(WitnessRequestError):
            build_add_checkpoint_request(old_size, [], NOTE)
    with pytest.raises(WitnessRequestError):
        build_add_checkpoint_request(5, [], "not a note")


def test_parse_refuses_non_text() -> None:
    with pytest.raises(WitnessRequestError):
        parse_add_checkpoint_request(b"old 0\n\n")  # type: ignore[arg-type]


# --- The state file ----------------------------------------------------------------------------------------


def test_state_round_trip_is_private_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "witness-state.json"
    assert load_state(path) is None
    state = state_at(5)
    save_state(path, state)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_state(path) == state
    assert sorted(os.listdir(tmp_path)) == ["witness-state.json"]
    document = json.loads(path.read_text())
    assert document["version"] == 1
    assert document["root_hash"] == base64.b64encode(state.root_hash).decode()

    grown, _ = witness(load_state(path), LOG.request(5, 9))
    save_state(path, grown)  # replaces the old file
    assert load_state(path) == grown
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(os.listdir(tmp_path)) == ["witness-state.json"]


def test_save_is_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(descriptor: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    save_state(tmp_path / "state.json", state_at(5))
    assert len(synced) == 2
    assert Path(synced[0]).name.endswith(".tmp")  # the data, before the rename
    assert Path(synced[1]) == tmp_path  # the directory entry, after it


def test_a_crash_before_the_rename_keeps_the_old_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "state.json"
    old = state_at(5)
    save_state(path, old)

    def crash(source: str, destination: str) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="power cut"):
        save_state(path, state_at(9))
    assert load_state(path) == old
    assert sorted(os.listdir(tmp_path)) == ["state.json"]


def _write_state_document(path: Path, change: Callable[[dict[str, object]], object]) -> None:
    save_state(path, state_at(5))
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


OTHER_LOG_NOTE = Log(LOG.entries, key=Ed25519PrivateKey.generate()).note(5)
CORRUPTIONS: dict[str, Callable[[dict[str, object]], object]] = {
    "missing field": lambda d: d.pop("root_hash"),
    "unknown field": lambda d: d.update(extra=1),
    "version 2": lambda d: d.update(version=2),
    "version true": lambda d: d.update(version=True),
    "size as text": lambda d: d.update(tree_size="5"),
    "size that differs from the note": lambda d: d.update(tree_size=6),
    "root that differs from the note": lambda d: d.update(root_hash=base64.b64encode(bytes(32)).decode()),
    "root not canonical base64": lambda d: d.update(root_hash="AAAA"),
    "note by another key": lambda d: d.update(signed_note=OTHER_LOG_NOTE),
    "note edited": lambda d: d.update(signed_note=str(d["signed_note"]).replace("\n5\n", "\n6\n")),
    "key for another origin": lambda d: d.update(
        log_verifier_key=verifier_key(LOG_KEY.public_key, "x.test/y")
    ),
    "origin as a number": lambda d: d.update(log_origin=5),
    "every field removed": lambda d: d.clear(),
}


@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_a_corrupt_state_file_is_an_error_not_a_fresh_start(tmp_path: Path, corruption: str) -> None:
    path = tmp_path / "state.json"
    _write_state_document(path, CORRUPTIONS[corruption])
    with pytest.raises(WitnessStateError):
        load_state(path)


@pytest.mark.parametrize("content", [b"", b"{", b"\xff\xfe", b"[]", b"null", b'{"version": 1}'])
def test_an_unreadable_state_file_is_an_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with pytest.raises(WitnessStateError):
        load_state(path)


def test_a_state_cannot_be_assembled_from_parts_that_disagree() -> None:
    good = state_at(5)
    with pytest.raises(WitnessStateError):
        WitnessState(ORIGIN, good.log_verifier_key, 6, good.root_hash, good.signed_note)
    with pytest.raises(WitnessStateError):
        WitnessState("other.test/audit", good.log_verifier_key, 5, good.root_hash, good.signed_note)
    with pytest.raises(WitnessStateError):
        WitnessState(ORIGIN, "not a key", 5, good.root_hash, good.signed_note)
    assert parse_verifier_key(good.log_verifier_key).name == ORIGIN
