"""Offline proof of one audit event (app.audit_log.evidence)."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import uuid
from collections.abc import Callable
from hashlib import sha256
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit_log.checkpoint import Checkpoint, VerifierKey, sign_checkpoint
from app.audit_log.cosignature import WitnessKey, cosign, note_with_cosignatures
from app.audit_log.events import canonical_entry, format_time
from app.audit_log.evidence import (
    EVENT_FIELDS,
    FORMAT,
    EventProofError,
    build_event_proof,
    verify_event_proof,
    verify_event_proof_text,
)
from app.audit_log.merkle import InMemoryNodeStore, inclusion_proof, leaf_hash

ORIGIN = "daylight.test/audit"
LOG_PRIVATE = Ed25519PrivateKey.generate()
LOG_KEY = VerifierKey(ORIGIN, LOG_PRIVATE.public_key())
W1_PRIVATE, W2_PRIVATE, W3_PRIVATE = (Ed25519PrivateKey.generate() for _ in range(3))
W1 = WitnessKey("witness.test/w1", W1_PRIVATE.public_key())
W2 = WitnessKey("witness.test/w2", W2_PRIVATE.public_key())
UNTRUSTED = WitnessKey("witness.test/untrusted", W3_PRIVATE.public_key())
WITNESSES = [W1, W2]
ACTOR_ID = uuid.UUID("6f1c1d2e-3a4b-4c5d-8e9f-0a1b2c3d4e5f")
TREE_SIZE = 7
SEQ = 3


def export_event(seq: int) -> dict[str, Any]:
    """An event as the JSON Lines export writes it."""
    staff = seq % 2 == 1
    return {
        "seq": seq,
        "occurred_at": format_time(dt.datetime(2026, 3, 1, 12, 0, seq, 250 * seq, tzinfo=dt.UTC)),
        "actor_id": str(ACTOR_ID) if staff else None,
        "actor": "amira" if staff else None,
        "role": "coordinator" if staff else "system",
        "action": "case.viewed",
        "object_type": "case" if staff else None,
        "object_id": f"case-{seq}" if staff else None,
        "outcome": "success",
        "details": json.dumps({"note": f"ünïcode — {seq}"}, ensure_ascii=False, separators=(",", ":")),
    }


def leaf_of(event: dict[str, Any]) -> bytes:
    # Straight from canonical_entry, as the log's checkpoint writer commits it.
    return leaf_hash(canonical_entry(*(event[name] for name in EVENT_FIELDS)))


EVENTS = [export_event(seq) for seq in range(1, TREE_SIZE + 1)]
STORE = InMemoryNodeStore(leaf_of(event) for event in EVENTS)
CHECKPOINT = Checkpoint(origin=ORIGIN, tree_size=TREE_SIZE, root_hash=STORE.root(), time=1700000000)
SIGNED_NOTE = sign_checkpoint(CHECKPOINT, LOG_PRIVATE)
COSIGNED_NOTE = note_with_cosignatures(
    SIGNED_NOTE,
    [
        cosign(CHECKPOINT, W1_PRIVATE, W1.name, 1700000010),
        cosign(CHECKPOINT, W2_PRIVATE, W2.name, 1700000020),
    ],
)


def proof_of(seq: int, note: str = COSIGNED_NOTE) -> dict[str, object]:
    return build_event_proof(EVENTS[seq - 1], TREE_SIZE, inclusion_proof(STORE, seq - 1, TREE_SIZE), note)


DOCUMENT = proof_of(SEQ)


def check(document: object, required: int = 2, witnesses: list[WitnessKey] = WITNESSES) -> Any:
    return verify_event_proof(document, LOG_KEY, witnesses, required)


def compact(document: object) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


# --- Building and verifying -------------------------------------------------------------------------------


def test_a_proof_verifies_and_says_what_it_proves() -> None:
    report = check(DOCUMENT)
    assert report.ok, report.problems
    assert (report.seq, report.tree_size, report.checkpoint_time) == (SEQ, TREE_SIZE, 1700000000)
    assert report.witnessed_by == [W1.name, W2.name]
    assert report.problems == []


def test_the_document_holds_the_event_as_exported() -> None:
    assert DOCUMENT["format"] == FORMAT
    assert DOCUMENT["event"] == EVENTS[SEQ - 1]
    assert DOCUMENT["leaf_index"] == SEQ - 1
    assert DOCUMENT["tree_size"] == TREE_SIZE
    assert DOCUMENT["checkpoint"] == COSIGNED_NOTE
    assert DOCUMENT["inclusion_proof"] == [
        base64.b64encode(node).decode() for node in inclusion_proof(STORE, SEQ - 1, TREE_SIZE)
    ]
    # It survives JSON, and the JSON text verifies as well.
    text = json.dumps(DOCUMENT)
    assert json.loads(text) == DOCUMENT
    assert verify_event_proof_text(text, LOG_KEY, WITNESSES, 2).ok
    assert verify_event_proof_text(text.encode(), LOG_KEY, WITNESSES, 2).ok


@pytest.mark.parametrize("seq", range(1, TREE_SIZE + 1))
def test_every_event_of_the_tree_has_a_proof(seq: int) -> None:
    report = check(proof_of(seq))
    assert report.ok, report.problems
    assert report.seq == seq


def test_build_accepts_database_values() -> None:
    event = dict(EVENTS[0])
    event["occurred_at"] = dt.datetime(2026, 3, 1, 12, 0, 1, 250, tzinfo=dt.UTC)
    event["actor_id"] = ACTOR_ID
    event["type"] = "event"  # extra keys of an export line are left out
    document = build_event_proof(event, TREE_SIZE, inclusion_proof(STORE, 0, TREE_SIZE), COSIGNED_NOTE)
    assert document["event"] == EVENTS[0]
    assert check(document).ok


def test_the_quorum_counts_trusted_witnesses_only() -> None:
    only_w1 = proof_of(SEQ, note_with_cosignatures(SIGNED_NOTE, [cosign(CHECKPOINT, W1_PRIVATE, W1.name, 1)]))
    assert check(only_w1, required=1).ok
    report = check(only_w1, required=2)
    assert not report.ok
    assert report.witnessed_by == [W1.name]
    assert any("2 are required" in problem for problem in report.problems)

    by_untrusted = proof_of(
        SEQ, note_with_cosignatures(SIGNED_NOTE, [cosign(CHECKPOINT, W3_PRIVATE, UNTRUSTED.name, 1)])
    )
    assert not check(by_untrusted, required=1).ok
    assert check(by_untrusted, required=1, witnesses=[UNTRUSTED]).ok

    uncosigned = proof_of(SEQ, SIGNED_NOTE)
    assert check(uncosigned, required=0).ok  # the log's signature alone, if that is all a reader asks
    assert not check(uncosigned, required=1).ok


def test_a_rewritten_log_resigned_by_the_same_key_fails_the_witness_quorum() -> None:
    # The operator edits event 3, rebuilds the tree and signs it with the real log key. Only the witnesses,
    # who never saw that tree, stand between the edit and a valid-looking proof.
    edited = [dict(event) for event in EVENTS]
    edited[SEQ - 1]["outcome"] = "denied"
    store = InMemoryNodeStore(leaf_of(event) for event in edited)
    checkpoint = Checkpoint(origin=ORIGIN, tree_size=TREE_SIZE, root_hash=store.root(), time=1700000000)
    note = sign_checkpoint(checkpoint, LOG_PRIVATE)
    forged = build_event_proof(edited[SEQ - 1], TREE_SIZE, inclusion_proof(store, SEQ - 1, TREE_SIZE), note)
    assert check(forged, required=0).ok
    assert not check(forged, required=1).ok
    # Moving the real cosignatures over does not help: they cover the real tree's root.
    with_stolen = dict(forged, checkpoint=note + COSIGNED_NOTE.split("\n\n")[1].split("\n", 1)[1])
    report = check(with_stolen, required=1)
    assert not report.ok
    assert any("cosignature" in problem for problem in report.problems)


def test_a_forged_cosignature_under_a_trusted_name_fails_even_with_a_quorum() -> None:
    line = cosign(CHECKPOINT, W2_PRIVATE, W2.name, 5)
    name, encoded = line[2:].rstrip("\n").split(" ")
    raw = bytearray(base64.b64decode(encoded))
    raw[40] ^= 1
    forged_line = f"— {name} {base64.b64encode(bytes(raw)).decode()}\n"
    note = note_with_cosignatures(SIGNED_NOTE, [cosign(CHECKPOINT, W1_PRIVATE, W1.name, 1), forged_line])
    report = check(proof_of(SEQ, note), required=1)
    assert not report.ok
    assert any("does not verify" in problem for problem in report.problems)


def test_build_refuses_inputs_that_do_not_prove_the_event() -> None:
    proof = inclusion_proof(STORE, SEQ - 1, TREE_SIZE)
    with pytest.raises(EventProofError, match="does not lead"):
        build_event_proof(EVENTS[SEQ], TREE_SIZE, proof, COSIGNED_NOTE)  # another event's proof
    with pytest.raises(EventProofError, match="not 6"):
        build_event_proof(EVENTS[SEQ - 1], 6, inclusion_proof(STORE, SEQ - 1, 6), COSIGNED_NOTE)
    with pytest.raises(EventProofError, match="not in a tree"):
        build_event_proof(export_event(8), TREE_SIZE, proof, COSIGNED_NOTE)
    with pytest.raises(EventProofError, match="no 'details' field"):
        build_event_proof(
            {k: v for k, v in EVENTS[0].items() if k != "details"}, TREE_SIZE, proof, COSIGNED_NOTE
        )
    with pytest.raises(EventProofError, match="malformed"):
        build_event_proof(EVENTS[SEQ - 1], TREE_SIZE, proof, "no note")


def test_a_bad_policy_is_the_callers_error() -> None:
    with pytest.raises(ValueError, match="own name and its own key"):
        check(DOCUMENT, required=2, witnesses=[W1, W1])
    with pytest.raises(ValueError, match="own name and its own key"):
        check(DOCUMENT, required=2, witnesses=[W1, WitnessKey("witness.test/alias", W1.public_key)])
    with pytest.raises(ValueError, match="witnesses_required"):
        check(DOCUMENT, required=3)
    with pytest.raises(ValueError, match="witnesses_required"):
        check(DOCUMENT, required=-1)


# --- Tampering: any change to the document fails ------------------------------------------------------------


def _set_event(name: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["event"][name] = value

    return change


def _flip_proof_byte(position: int, byte: int) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        raw = bytearray(base64.b64decode(document["inclusion_proof"][position]))
        raw[byte] ^= 0x01
        document["inclusion_proof"][position] = base64.b64encode(bytes(raw)).decode()

    return change


def _edit_note(edit: Callable[[list[str]], object]) -> Callable[[dict[str, Any]], None]:
    """Edit the checkpoint note line by line (lines[-1] is the empty string after the final newline)."""

    def change(document: dict[str, Any]) -> None:
        lines = document["checkpoint"].split("\n")
        edit(lines)
        document["checkpoint"] = "\n".join(lines)

    return change


def _flip_signature_line(index: int) -> Callable[[list[str]], None]:
    def edit(lines: list[str]) -> None:
        prefix, encoded = lines[index].rsplit(" ", 1)
        raw = bytearray(base64.b64decode(encoded))
        raw[-1] ^= 0x01
        lines[index] = f"{prefix} {base64.b64encode(bytes(raw)).decode()}"

    return edit


def _seq_and_index(seq: int) -> Callable[[dict[str, Any]], None]:
    def change(document: dict[str, Any]) -> None:
        document["event"]["seq"] = seq
        document["leaf_index"] = seq - 1

    return change


PROOF_LENGTH = len(DOCUMENT["inclusion_proof"])  # type: ignore[arg-type]
# Note lines: origin, size, root, time, blank, log signature, w1 cosignature, w2 cosignature, "".
TAMPERINGS: dict[str, Callable[[dict[str, Any]], None]] = {
    "seq": _set_event("seq", SEQ + 1),
    "seq and leaf index together": _seq_and_index(SEQ + 1),
    "seq as a float": _set_event("seq", float(SEQ)),
    "seq as text": _set_event("seq", str(SEQ)),
    "occurred_at by a microsecond": _set_event(
        "occurred_at", EVENTS[SEQ - 1]["occurred_at"].replace("000750Z", "000751Z")
    ),
    "occurred_at without microseconds": _set_event("occurred_at", "2026-03-01T12:00:03Z"),
    # The same instant, spelled so strptime reads it: only the canonical-form check tells these apart.
    "occurred_at with five-digit microseconds": _set_event("occurred_at", "2026-03-01T12:00:03.00075Z"),
    "occurred_at with unpadded fields": _set_event("occurred_at", "2026-3-1T12:0:3.000750Z"),
    "occurred_at as an offset": _set_event("occurred_at", "2026-03-01T12:00:03.000750+00:00"),
    "actor_id": _set_event("actor_id", str(uuid.uuid4())),
    "actor_id in capitals": _set_event("actor_id", str(ACTOR_ID).upper()),
    "actor_id without hyphens": _set_event("actor_id", ACTOR_ID.hex),
    "actor_id removed": _set_event("actor_id", None),
    "actor": _set_event("actor", "someone else"),
    "actor removed": _set_event("actor", None),
    "role": _set_event("role", "admin"),
    "action": _set_event("action", "case.deleted"),
    "object_type": _set_event("object_type", "tip"),
    "object_id": _set_event("object_id", "case-4"),
    "outcome": _set_event("outcome", "denied"),
    "details": _set_event("details", '{"note":"ünïcode — 4"}'),
    "details whitespace": _set_event("details", '{"note": "ünïcode — 3"}'),
    "event field added": _set_event("comment", "x"),
    "event field removed": lambda d: d["event"].pop("role"),
    "leaf_index": lambda d: d.update(leaf_index=SEQ),
    "leaf_index as a float": lambda d: d.update(leaf_index=float(SEQ - 1)),
    "tree_size up": lambda d: d.update(tree_size=TREE_SIZE + 1),
    "tree_size down": lambda d: d.update(tree_size=TREE_SIZE - 1),
    "tree_size as true": lambda d: d.update(tree_size=True),
    **{f"proof hash {i}": _flip_proof_byte(i, 0) for i in range(PROOF_LENGTH)},
    **{f"proof hash {i}, last byte": _flip_proof_byte(i, 31) for i in range(PROOF_LENGTH)},
    "proof hash dropped": lambda d: d["inclusion_proof"].pop(),
    "proof hash added": lambda d: d["inclusion_proof"].append(base64.b64encode(bytes(32)).decode()),
    "proof hashes swapped": lambda d: d["inclusion_proof"].reverse(),
    "proof hash not canonical base64": lambda d: d["inclusion_proof"].__setitem__(
        0, d["inclusion_proof"][0][:-2] + chr(ord(d["inclusion_proof"][0][-2]) ^ 1) + "="
    ),
    "proof hash as bytes values": lambda d: d["inclusion_proof"].__setitem__(0, list(range(32))),
    "checkpoint root": _edit_note(lambda lines: lines.__setitem__(2, base64.b64encode(bytes(32)).decode())),
    "checkpoint time": _edit_note(lambda lines: lines.__setitem__(3, "time 1700000001")),
    "checkpoint size": _edit_note(lambda lines: lines.__setitem__(1, str(TREE_SIZE + 1))),
    "log signature": _edit_note(_flip_signature_line(5)),
    "log signature removed": _edit_note(lambda lines: lines.pop(5)),
    "w1 cosignature": _edit_note(_flip_signature_line(6)),
    "w2 cosignature": _edit_note(_flip_signature_line(7)),
    "w2 cosignature removed": _edit_note(lambda lines: lines.pop(7)),
    "w2 cosignature renamed": _edit_note(lambda lines: lines.__setitem__(7, lines[7].replace("/w2", "/w9"))),
    "format": lambda d: d.update(format="daylight-audit-event-proof/v2"),
    "field added": lambda d: d.update(comment="trust me"),
    "field removed": lambda d: d.pop("leaf_index"),
}


@pytest.mark.parametrize("tampering", list(TAMPERINGS))
def test_any_change_fails(tampering: str) -> None:
    document = copy.deepcopy(DOCUMENT)
    TAMPERINGS[tampering](document)
    assert compact(document) != compact(DOCUMENT)  # 3.0 == 3 in Python, not in JSON text
    report = check(document)
    assert not report.ok
    assert report.problems
    # And as JSON text, the way a reader receives it.
    assert not verify_event_proof_text(json.dumps(document), LOG_KEY, WITNESSES, 2).ok


def test_changing_any_character_of_the_note_fails() -> None:
    note = DOCUMENT["checkpoint"]
    assert isinstance(note, str)
    for position, character in enumerate(note):
        changed = note[:position] + chr(ord(character) ^ 0x01) + note[position + 1 :]
        report = check(dict(DOCUMENT, checkpoint=changed))
        assert not report.ok, (position, character)


def test_changing_any_byte_of_the_json_text_fails() -> None:
    text = compact(DOCUMENT).encode()
    assert verify_event_proof_text(text, LOG_KEY, WITNESSES, 2).ok
    for position in range(len(text)):
        changed = text[:position] + bytes([text[position] ^ 0x01]) + text[position + 1 :]
        report = verify_event_proof_text(changed, LOG_KEY, WITNESSES, 2)
        assert not report.ok, (position, text[max(0, position - 20) : position + 20])


# --- Malformed input is a failed report, never a crash ------------------------------------------------------


MALFORMED: list[object] = [
    None,
    [],
    "a string",
    5,
    {},
    {"format": FORMAT},
    dict(DOCUMENT, event=[1, 2]),
    dict(DOCUMENT, event=None),
    dict(DOCUMENT, event=dict.fromkeys(EVENT_FIELDS)),
    dict(DOCUMENT, event={name: [] for name in EVENT_FIELDS}),
    dict(DOCUMENT, event=dict(EVENTS[SEQ - 1], actor="\ud800")),
    dict(DOCUMENT, event=dict(EVENTS[SEQ - 1], occurred_at="yesterday")),
    dict(DOCUMENT, event=dict(EVENTS[SEQ - 1], actor_id="not-a-uuid")),
    dict(DOCUMENT, event=dict(EVENTS[SEQ - 1], seq=2**64)),
    dict(DOCUMENT, event=dict(EVENTS[SEQ - 1], seq=0)),
    dict(DOCUMENT, inclusion_proof="abc"),
    dict(DOCUMENT, inclusion_proof=[1, 2]),
    dict(DOCUMENT, inclusion_proof=[None]),
    dict(DOCUMENT, inclusion_proof=["!!"]),
    dict(DOCUMENT, inclusion_proof=[base64.b64encode(bytes(31)).decode()]),
    dict(DOCUMENT, inclusion_proof=[base64.b64encode(bytes(32)).decode()] * 64),
    dict(DOCUMENT, inclusion_proof={"a": 1}),
    dict(DOCUMENT, checkpoint=None),
    dict(DOCUMENT, checkpoint=5),
    dict(DOCUMENT, checkpoint=""),
    dict(DOCUMENT, checkpoint="\x00"),
    dict(DOCUMENT, tree_size=-1),
    dict(DOCUMENT, tree_size=None),
    dict(DOCUMENT, tree_size=2**70),
    dict(DOCUMENT, leaf_index=None),
    dict(DOCUMENT, leaf_index=-1),
    dict(DOCUMENT, format=None),
    dict(DOCUMENT, format=["x"]),
]


@pytest.mark.parametrize("document", MALFORMED, ids=[f"case{index}" for index in range(len(MALFORMED))])
def test_malformed_documents_fail_cleanly(document: object) -> None:
    report = check(document)
    assert not report.ok
    assert report.problems
    assert all(isinstance(problem, str) and problem for problem in report.problems)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "not json",
        "[" * 100000,
        b"\xff\xfe\x00",
        '{"format": NaN}',
        compact(DOCUMENT)[:-1] + ',"tree_size":6}',  # a duplicate key: which one would a reader see?
        compact(DOCUMENT).replace('"actor":"amira"', '"actor":"amira","actor":"amira"'),
    ],
)
def test_malformed_json_text_fails_cleanly(text: str | bytes) -> None:
    report = verify_event_proof_text(text, LOG_KEY, WITNESSES, 2)
    assert not report.ok
    assert report.problems


def test_duplicate_keys_are_named() -> None:
    text = compact(DOCUMENT).replace('"actor":"amira"', '"actor":"mallory","actor":"amira"')
    report = verify_event_proof_text(text, LOG_KEY, WITNESSES, 2)
    assert report.problems == ["the proof has the key 'actor' twice"]


def test_the_leaf_hash_is_the_canonical_entry_of_the_exported_fields() -> None:
    # Pin the relation the verifier relies on, without the module: event 3's leaf is in the signed tree.
    event = EVENTS[SEQ - 1]
    entry = canonical_entry(*(event[name] for name in EVENT_FIELDS))
    assert entry.startswith(b'["daylight-audit-event/v1",3,"2026-03-01T12:00:03.000750Z",')
    assert STORE.get(0, SEQ - 1) == sha256(b"\x00" + entry).digest()
