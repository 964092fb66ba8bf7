"""Tamper trials against the audit verifier, in memory: every kind of tampering is detected and located.

No database: the log is a list of (seq, canonical entry, stored leaf hash or None) tuples, exactly what
``app.audit_log.verification.verify_entries`` reads, with checkpoints signed by ``app.audit_log.checkpoint``.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit_log.checkpoint import (
    KEY_ID_SIZE,
    Checkpoint,
    checkpoint_body,
    sign_checkpoint,
    signing_key_from_seed,
    verifier_key,
)
from app.audit_log.events import canonical_entry, format_time
from app.audit_log.merkle import (
    InMemoryNodeStore,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_from_leaf_hashes,
)
from app.audit_log.offline import verify_export
from app.audit_log.verification import SignedCheckpoint, VerifyReport, verify_entries

ORIGIN = "daylight.test/audit"
KEY = signing_key_from_seed(bytes(32))
PUBLIC_KEY = KEY.public_key()
OTHER_KEY = signing_key_from_seed(bytes([7]) * 32)
SIZE = 80
# Several sizes, powers of two and not, the first event alone, and the final size.
CHECKPOINT_SIZES = (1, 13, 32, 50, 64, 77, SIZE)
START = dt.datetime(2026, 11, 29, 9, 0, tzinfo=dt.UTC)
SIGNED_AT = 1_790_000_000
TRIALS = 1_000

Entry = tuple[int, bytes, bytes | None]


class Fields(NamedTuple):
    """Every column of an audit event but seq, in canonical_entry's order."""

    occurred_at: dt.datetime
    actor_id: uuid.UUID | None
    actor: str | None
    role: str | None
    action: str
    object_type: str | None
    object_id: str | None
    outcome: str
    details: str


FIELD_NAMES = Fields._fields
ACTIONS = ("auth.login", "tip.view", "tip.triage", "tip.export", "key.grant", "audit.verify", "staff.invite")
OUTCOMES = ("success", "failure", "denied")
ROLES = ("caseworker", "lead", "auditor", "admin")


def seeded(seed: int) -> random.Random:
    return random.Random(seed)


def make_fields(number: int, rng: random.Random) -> Fields:
    system = number % 9 == 0
    action = ACTIONS[number % len(ACTIONS)]
    return Fields(
        occurred_at=START + dt.timedelta(seconds=17 * number, microseconds=rng.randrange(1_000_000)),
        actor_id=None if system else uuid.UUID(int=rng.getrandbits(128), version=4),
        actor=None if system else f"staff-{number % 5}",
        role="system" if system else ROLES[number % len(ROLES)],
        action=action,
        object_type=None if number % 4 == 0 else "tip",
        object_id=None if number % 4 == 0 else f"tip-{number:04d}",
        outcome=OUTCOMES[number % len(OUTCOMES)],
        details=json.dumps(
            {"n": number, "why": "ré-examen"} if number % 3 else {},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        ),
    )


FIELDS: tuple[Fields, ...] = tuple(make_fields(number, seeded(number)) for number in range(SIZE))


def entry_of(seq: int, fields: Fields) -> bytes:
    return canonical_entry(seq, *fields)


def log_entries(fields: Sequence[Fields] = FIELDS) -> list[Entry]:
    return [(seq, entry_of(seq, item), None) for seq, item in enumerate(fields, start=1)]


LEAVES: tuple[bytes, ...] = tuple(leaf_hash(entry) for _, entry, _ in log_entries())


def signed(
    size: int,
    *,
    root: bytes | None = None,
    key: Ed25519PrivateKey = KEY,
    origin: str = ORIGIN,
    stored_size: int | None = None,
) -> SignedCheckpoint:
    checkpoint = Checkpoint(
        origin=origin,
        tree_size=size,
        root_hash=root_from_leaf_hashes(LEAVES[:size]) if root is None else root,
        time=SIGNED_AT + size,
    )
    return SignedCheckpoint(size if stored_size is None else stored_size, sign_checkpoint(checkpoint, key))


CHECKPOINTS: tuple[SignedCheckpoint, ...] = tuple(signed(size) for size in CHECKPOINT_SIZES)


def verify(entries: Sequence[Entry], checkpoints: Sequence[SignedCheckpoint] = CHECKPOINTS) -> VerifyReport:
    return verify_entries(list(entries), list(checkpoints), PUBLIC_KEY, ORIGIN)


def detected(report: VerifyReport) -> bool:
    return report.ok is False and bool(report.problems)


def flip_bit(value: bytes, rng: random.Random | None = None) -> bytes:
    position = 0 if rng is None else rng.randrange(len(value) * 8)
    changed = bytearray(value)
    changed[position // 8] ^= 1 << (position % 8)
    return bytes(changed)


def split_note(note: str) -> tuple[str, str]:
    """(body, signature line) of a note with one signature."""
    body, signature_line = note.split("\n\n")
    return body + "\n", signature_line


def with_root(checkpoint: SignedCheckpoint, root: bytes) -> SignedCheckpoint:
    """The same note with another root in its body and the old signature line kept."""
    _, signature_line = split_note(checkpoint.signed_note)
    body = checkpoint_body(
        Checkpoint(
            origin=ORIGIN,
            tree_size=checkpoint.tree_size,
            root_hash=root,
            time=SIGNED_AT + checkpoint.tree_size,
        )
    )
    return SignedCheckpoint(checkpoint.tree_size, f"{body}\n{signature_line}")


def replace(
    checkpoints: Sequence[SignedCheckpoint], size: int, new: SignedCheckpoint
) -> list[SignedCheckpoint]:
    return [new if checkpoint.tree_size == size else checkpoint for checkpoint in checkpoints]


def different_value(name: str, old: object, rng: random.Random) -> Any:
    """Another value for the column ``name``: always different from ``old``, sometimes a switch to or
    from NULL, sometimes a one-character change."""
    if name == "occurred_at":
        assert isinstance(old, dt.datetime)
        return old + rng.choice([1, -1]) * dt.timedelta(microseconds=rng.randrange(1, 10**8))
    if name == "actor_id":
        choices: list[object] = [None, uuid.UUID(int=rng.getrandbits(128), version=4)]
        if isinstance(old, uuid.UUID):
            choices.append(uuid.UUID(int=old.int ^ (1 << 70)))  # one bit of the id
        return rng.choice([value for value in choices if value != old])
    if name == "action":
        return rng.choice([action for action in ACTIONS if action != old] + [f"{old}x"])
    if name == "outcome":
        return rng.choice([outcome for outcome in OUTCOMES if outcome != old])
    if name == "details":
        assert isinstance(old, str)
        return rng.choice(
            [value for value in ("{}", '{"n":-1}', old.replace("}", ',"x":1}'), old + " ") if value != old]
        )
    # actor, role, object_type, object_id: nullable text
    if old is None:
        return rng.choice(["", "None", "null", "staff-0"])
    assert isinstance(old, str)
    return rng.choice([None, old + "x", old[:-1] or "y", old.upper() if old.upper() != old else old + "Z"])


def edited(fields: Fields, name: str, value: object) -> Fields:
    changed = fields._replace(**{name: value})
    assert changed != fields
    return changed


# --- The untouched log ---------------------------------------------------------------------------------


def test_the_untouched_log_verifies() -> None:
    report = verify(log_entries())
    assert report.ok, report.problems
    assert report.problems == []
    assert report.first_bad_seq is None
    assert report.size == SIZE
    assert report.root == root_from_leaf_hashes(LEAVES)
    assert report.checkpoints_checked == len(CHECKPOINT_SIZES)


def test_the_untouched_log_verifies_with_its_stored_leaf_hashes() -> None:
    entries = [(seq, entry, leaf) for (seq, entry, _), leaf in zip(log_entries(), LEAVES, strict=True)]
    report = verify(entries)
    assert report.ok, report.problems


def test_appending_after_the_last_checkpoint_is_not_tampering() -> None:
    """Control: the verifier accepts honest growth, so the trials below fail for their tampering only."""
    more = [*FIELDS, *(make_fields(number, seeded(number)) for number in range(SIZE, SIZE + 5))]
    report = verify(log_entries(more))
    assert report.ok, report.problems
    assert report.size == SIZE + 5


def test_the_fixture_log_is_varied() -> None:
    """Every nullable column is NULL somewhere and set elsewhere; times strictly increase."""
    for name in ("actor_id", "actor", "object_type", "object_id"):
        values = [getattr(item, name) for item in FIELDS]
        assert None in values
        assert any(value is not None for value in values)
    times = [item.occurred_at for item in FIELDS]
    assert times == sorted(times)
    assert len(set(times)) == SIZE
    assert len({item.action for item in FIELDS}) == len(ACTIONS)
    assert len({item.outcome for item in FIELDS}) == len(OUTCOMES)


# --- Named tamperings with the events ------------------------------------------------------------------


@pytest.mark.parametrize("name", FIELD_NAMES)
@pytest.mark.parametrize("seq", [1, 13, 14, 40, 64, 65, SIZE])
def test_editing_one_field_of_one_event_is_detected_at_or_before_it(name: str, seq: int) -> None:
    fields = list(FIELDS)
    fields[seq - 1] = edited(
        fields[seq - 1], name, different_value(name, getattr(fields[seq - 1], name), seeded(seq))
    )
    report = verify(log_entries(fields))
    assert detected(report)
    assert report.first_bad_seq is not None
    assert report.first_bad_seq <= seq
    # The damage is located no earlier than just after the last checkpoint before the edit.
    assert report.first_bad_seq == max([0, *(size for size in CHECKPOINT_SIZES if size < seq)]) + 1


@pytest.mark.parametrize("seq", [2, 14, 33, 40, 65])
def test_deleting_an_event_from_the_middle_is_detected_at_its_seq(seq: int) -> None:
    entries = log_entries()
    del entries[seq - 1]
    report = verify(entries)
    assert detected(report)
    assert report.first_bad_seq == seq


@pytest.mark.parametrize(("first", "second"), [(1, 2), (10, 11), (20, 45), (3, SIZE), (64, 65)])
def test_swapping_two_events_contents_is_detected(first: int, second: int) -> None:
    """Reordering: the contents change places while the sequence numbers stay where they were."""
    fields = list(FIELDS)
    fields[first - 1], fields[second - 1] = fields[second - 1], fields[first - 1]
    report = verify(log_entries(fields))
    assert detected(report)
    assert report.first_bad_seq is not None
    assert report.first_bad_seq <= first


def test_swapping_two_entries_with_their_seqs_is_detected() -> None:
    """Reordering the rows themselves (each keeps its own seq): the sequence runs 1, 2, 4, 3, ..."""
    entries = log_entries()
    entries[2], entries[3] = entries[3], entries[2]
    report = verify(entries)
    assert detected(report)
    assert report.first_bad_seq == 3


@pytest.mark.parametrize("position", [0, 1, 20, 50, SIZE - 1])
def test_inserting_an_event_and_renumbering_the_rest_is_detected(position: int) -> None:
    forged = make_fields(999, seeded(999))
    fields = [*FIELDS[:position], forged, *FIELDS[position:]]
    report = verify(log_entries(fields))
    assert detected(report)
    assert report.first_bad_seq is not None
    assert report.first_bad_seq <= position + 1


@pytest.mark.parametrize("k", [1, 2, 3, 16, SIZE - 1, SIZE])
def test_truncating_the_last_events_is_detected_after_the_new_end(k: int) -> None:
    entries = log_entries()[: SIZE - k]
    report = verify(entries)
    assert detected(report)
    assert report.size == SIZE - k
    assert report.first_bad_seq == SIZE - k + 1


@pytest.mark.parametrize("seq", [1, 30, SIZE])
def test_a_stored_leaf_hash_that_disagrees_with_its_entry_is_detected_at_its_seq(seq: int) -> None:
    entries: list[Entry] = [
        (s, entry, leaf) for (s, entry, _), leaf in zip(log_entries(), LEAVES, strict=True)
    ]
    entries[seq - 1] = (seq, entries[seq - 1][1], flip_bit(LEAVES[seq - 1]))
    report = verify(entries)
    assert detected(report)
    assert report.first_bad_seq == seq


def test_an_edit_is_located_at_or_before_it_even_when_a_later_stored_leaf_points_elsewhere() -> None:
    """The node table is not trusted: an attacker who edits event 20 and rewrites its leaf hash, then
    edits event 25 without rewriting its leaf hash, must not make the verifier name event 25."""
    fields = list(FIELDS)
    fields[19] = edited(fields[19], "action", "tip.export")  # 20
    fields[24] = edited(fields[24], "outcome", "denied" if fields[24].outcome != "denied" else "success")
    entries: list[Entry] = []
    for seq, item in enumerate(fields, start=1):
        entry = entry_of(seq, item)
        entries.append((seq, entry, leaf_hash(entry) if seq != 25 else LEAVES[24]))
    report = verify(entries)
    assert detected(report)
    assert report.first_bad_seq is not None
    assert report.first_bad_seq <= 20, report.problems


# --- Named tamperings with the checkpoints -------------------------------------------------------------


@pytest.mark.parametrize("size", [13, 64, SIZE])
@pytest.mark.parametrize("delta", [1, -1])
def test_a_checkpoint_stored_at_another_size_than_it_signs_is_detected(size: int, delta: int) -> None:
    checkpoints = replace(CHECKPOINTS, size, signed(size, stored_size=size + delta))
    report = verify(log_entries(), checkpoints)
    assert detected(report)


def test_a_checkpoint_whose_root_is_re_signed_by_another_key_is_detected() -> None:
    forged = signed(50, root=flip_bit(root_from_leaf_hashes(LEAVES[:50])), key=OTHER_KEY)
    report = verify(log_entries(), replace(CHECKPOINTS, 50, forged))
    assert detected(report)
    assert any("not validly signed" in problem for problem in report.problems)


def test_a_matching_checkpoint_signed_by_another_key_is_not_trusted() -> None:
    """The right root under the wrong key proves nothing."""
    report = verify(log_entries(), replace(CHECKPOINTS, SIZE, signed(SIZE, key=OTHER_KEY)))
    assert detected(report)


@pytest.mark.parametrize("offset", [0, KEY_ID_SIZE - 1, KEY_ID_SIZE, KEY_ID_SIZE + 31, KEY_ID_SIZE + 63])
def test_a_checkpoint_with_one_signature_byte_flipped_is_detected(offset: int) -> None:
    original = CHECKPOINTS[3]
    body, signature_line = split_note(original.signed_note)
    prefix, encoded = signature_line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[offset] ^= 0x01
    note = f"{body}\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    report = verify(
        log_entries(), replace(CHECKPOINTS, original.tree_size, SignedCheckpoint(original.tree_size, note))
    )
    assert detected(report)


@pytest.mark.parametrize("origin", ["daylight.test/audit2", "daylight.test", "evil.example/audit"])
def test_a_checkpoint_for_another_origin_is_detected(origin: str) -> None:
    report = verify(log_entries(), replace(CHECKPOINTS, 32, signed(32, origin=origin)))
    assert detected(report)


def test_a_checkpoint_with_its_root_altered_and_the_old_signature_kept_is_detected() -> None:
    original = CHECKPOINTS[2]
    report = verify(
        log_entries(),
        replace(
            CHECKPOINTS,
            original.tree_size,
            with_root(original, flip_bit(root_from_leaf_hashes(LEAVES[: original.tree_size]))),
        ),
    )
    assert detected(report)


def test_a_checkpoint_without_its_signature_line_is_detected() -> None:
    original = CHECKPOINTS[-1]
    body, _ = split_note(original.signed_note)
    report = verify(log_entries(), replace(CHECKPOINTS, SIZE, SignedCheckpoint(SIZE, body + "\n")))
    assert detected(report)


# --- A thousand random trials --------------------------------------------------------------------------


@dataclasses.dataclass
class Trial:
    """One tampered copy of the log, and how far from the start the damage is (None: checkpoints only)."""

    entries: list[Entry]
    checkpoints: list[SignedCheckpoint]
    earliest_damage: int | None


def event_trial(fields: list[Fields], earliest: int) -> Trial:
    return Trial(log_entries(fields), list(CHECKPOINTS), earliest)


def t_edit(rng: random.Random) -> Trial:
    index = rng.randrange(SIZE)
    name = rng.choice(FIELD_NAMES)
    fields = list(FIELDS)
    fields[index] = edited(fields[index], name, different_value(name, getattr(fields[index], name), rng))
    return event_trial(fields, index + 1)


def t_delete(rng: random.Random) -> Trial:
    index = rng.randrange(SIZE)
    entries = log_entries()
    del entries[index]
    return Trial(entries, list(CHECKPOINTS), index + 1)


def t_swap(rng: random.Random) -> Trial:
    first, second = sorted(rng.sample(range(SIZE), 2))
    fields = list(FIELDS)
    fields[first], fields[second] = fields[second], fields[first]
    return event_trial(fields, first + 1)


def t_duplicate(rng: random.Random) -> Trial:
    """A copy of one event: the row itself (its seq too) placed later, its contents inserted later and the
    rest renumbered, or its contents written over another event."""
    index = rng.randrange(SIZE)
    variant = rng.choice(["row", "renumbered", "overwrite"])
    if variant == "row":
        at = rng.randrange(index + 1, SIZE + 1)
        entries = log_entries()
        entries.insert(at, entries[index])
        return Trial(entries, list(CHECKPOINTS), at + 1)
    fields = list(FIELDS)
    if variant == "renumbered" and index < SIZE - 1:
        # Before an existing event: a renumbered copy after the last one would be an honest append.
        at = rng.randrange(index + 1, SIZE)
        fields.insert(at, FIELDS[index])
        return event_trial(fields, at + 1)
    at = rng.choice([other for other in range(SIZE) if other != index])
    fields[at] = FIELDS[index]
    return event_trial(fields, at + 1)


def t_truncate(rng: random.Random) -> Trial:
    k = rng.randint(1, SIZE)
    return Trial(log_entries()[: SIZE - k], list(CHECKPOINTS), SIZE - k + 1)


def t_insert(rng: random.Random) -> Trial:
    position = rng.randrange(SIZE)  # before an existing event: inserting after the last would be an append
    forged = make_fields(rng.randrange(10**6), rng)
    return event_trial([*FIELDS[:position], forged, *FIELDS[position:]], position + 1)


def t_alter_checkpoint_root(rng: random.Random) -> Trial:
    index = rng.randrange(len(CHECKPOINTS))
    original = CHECKPOINTS[index]
    root = flip_bit(root_from_leaf_hashes(LEAVES[: original.tree_size]), rng)
    checkpoints = list(CHECKPOINTS)
    checkpoints[index] = with_root(original, root)
    return Trial(log_entries(), checkpoints, None)


def t_drop_signature(rng: random.Random) -> Trial:
    index = rng.randrange(len(CHECKPOINTS))
    body, _ = split_note(CHECKPOINTS[index].signed_note)
    checkpoints = list(CHECKPOINTS)
    checkpoints[index] = SignedCheckpoint(CHECKPOINTS[index].tree_size, rng.choice([body + "\n", body]))
    return Trial(log_entries(), checkpoints, None)


TAMPERINGS: dict[str, Callable[[random.Random], Trial]] = {
    "edit a field": t_edit,
    "delete an event": t_delete,
    "swap two events": t_swap,
    "duplicate an event": t_duplicate,
    "truncate": t_truncate,
    "insert a forged event": t_insert,
    "alter a checkpoint root": t_alter_checkpoint_root,
    "drop a signature line": t_drop_signature,
}


def with_stored_leaves(entries: list[Entry], mode: str) -> list[Entry]:
    """The leaf hashes a database would join in: none, the untouched node table (keyed by seq), or a node
    table the attacker rewrote to match the tampered events."""
    if mode == "none":
        return entries
    if mode == "untouched nodes":
        return [(seq, entry, LEAVES[seq - 1] if 1 <= seq <= SIZE else None) for seq, entry, _ in entries]
    return [(seq, entry, leaf_hash(entry)) for seq, entry, _ in entries]


def test_one_thousand_random_tamper_trials_are_all_detected() -> None:
    rng = seeded(20261129)
    assert verify(log_entries()).ok
    counts = dict.fromkeys(TAMPERINGS, 0)
    caught = dict.fromkeys(TAMPERINGS, 0)
    missed: list[str] = []
    mislocated: list[str] = []
    for trial_number in range(TRIALS):
        kind = rng.choice(list(TAMPERINGS))
        mode = rng.choice(["none", "untouched nodes", "rewritten nodes"])
        trial = TAMPERINGS[kind](rng)
        report = verify(with_stored_leaves(trial.entries, mode), trial.checkpoints)
        counts[kind] += 1
        if report.ok is False:
            caught[kind] += 1
        else:
            missed.append(f"trial {trial_number}: {kind} ({mode})")
        if trial.earliest_damage is not None and not (
            report.first_bad_seq is not None and report.first_bad_seq <= trial.earliest_damage
        ):
            mislocated.append(
                f"trial {trial_number}: {kind} ({mode}) at {trial.earliest_damage}, "
                f"reported {report.first_bad_seq}"
            )
    assert missed == []
    assert sum(caught.values()) == TRIALS
    assert all(count > 0 for count in counts.values()), counts
    assert caught == counts
    assert mislocated == []
    assert tuple(make_fields(number, seeded(number)) for number in range(SIZE)) == FIELDS


# --- The offline export --------------------------------------------------------------------------------


def export_lines(
    fields: Sequence[Fields] = FIELDS, checkpoints: Sequence[SignedCheckpoint] = CHECKPOINTS
) -> list[str]:
    """The JSON Lines of app.audit_log.export.export_lines, built from the in-memory log."""
    entries = log_entries(fields)
    store = InMemoryNodeStore(leaf_hash(entry) for _, entry, _ in entries)
    ordered = sorted(checkpoints, key=lambda checkpoint: checkpoint.tree_size)
    latest = ordered[-1] if ordered else None

    def b64(value: bytes) -> str:
        return base64.b64encode(value).decode()

    lines = [
        json.dumps(
            {
                "type": "header",
                "format": "daylight-audit-export/v1",
                "verifier_key": verifier_key(PUBLIC_KEY, ORIGIN),
            }
        )
    ]
    for seq, item in enumerate(fields, start=1):
        line: dict[str, object] = {
            "type": "event",
            "seq": seq,
            "occurred_at": format_time(item.occurred_at),
            "actor_id": None if item.actor_id is None else str(item.actor_id),
            "actor": item.actor,
            "role": item.role,
            "action": item.action,
            "object_type": item.object_type,
            "object_id": item.object_id,
            "outcome": item.outcome,
            "details": item.details,
        }
        if latest is not None and seq <= latest.tree_size:
            proof = inclusion_proof(store, seq - 1, latest.tree_size)
            line["inclusion"] = {"tree_size": latest.tree_size, "proof": [b64(node) for node in proof]}
        lines.append(json.dumps(line, ensure_ascii=False))
    for previous, checkpoint in zip([None, *ordered[:-1]], ordered, strict=True):
        lines.append(
            json.dumps(
                {
                    "type": "checkpoint",
                    "tree_size": checkpoint.tree_size,
                    "signed_note": checkpoint.signed_note,
                    "consistency_from": None if previous is None else previous.tree_size,
                    "consistency_proof": None
                    if previous is None
                    else [
                        b64(node)
                        for node in consistency_proof(store, previous.tree_size, checkpoint.tree_size)
                    ],
                }
            )
        )
    return lines


def verify_lines(lines: Sequence[str]) -> VerifyReport:
    return verify_export(list(lines), PUBLIC_KEY, ORIGIN)


def event_line_index(seq: int) -> int:
    return seq  # line 0 is the header


def test_the_export_round_trip_verifies() -> None:
    lines = export_lines()
    assert len(lines) == 1 + SIZE + len(CHECKPOINT_SIZES)
    report = verify_lines(lines)
    assert report.ok, report.problems
    assert report.size == SIZE
    assert report.root == root_from_leaf_hashes(LEAVES)
    assert report.checkpoints_checked == len(CHECKPOINT_SIZES)
    # Read as a file would be: with newlines and a blank line at the end.
    assert verify_lines([line + "\n" for line in lines] + ["\n"]).ok


def test_an_export_with_events_after_the_last_checkpoint_verifies() -> None:
    lines = export_lines(checkpoints=[c for c in CHECKPOINTS if c.tree_size < SIZE])
    assert "inclusion" not in json.loads(lines[event_line_index(SIZE)])
    report = verify_lines(lines)
    assert report.ok, report.problems


@pytest.mark.parametrize("seq", [1, 33, SIZE])
def test_editing_the_action_of_an_exported_event_is_detected(seq: int) -> None:
    lines = export_lines()
    event = json.loads(lines[event_line_index(seq)])
    event["action"] = event["action"] + "x"
    lines[event_line_index(seq)] = json.dumps(event, ensure_ascii=False)
    report = verify_lines(lines)
    assert detected(report)
    assert report.first_bad_seq is not None
    assert report.first_bad_seq <= seq
    assert any(f"event {seq}: its inclusion proof" in problem for problem in report.problems)


@pytest.mark.parametrize(
    "line_number",
    [
        event_line_index(1),
        event_line_index(40),
        event_line_index(SIZE),  # events: first, middle, last
        1 + SIZE,
        1 + SIZE + 3,
        1 + SIZE + len(CHECKPOINT_SIZES) - 1,  # checkpoints: first, middle, last
    ],
)
def test_deleting_a_line_of_the_export_is_detected(line_number: int) -> None:
    lines = export_lines()
    del lines[line_number]
    assert detected(verify_lines(lines))


@pytest.mark.parametrize(("seq", "element"), [(1, 0), (1, -1), (40, 2), (SIZE, 0)])
def test_altering_one_inclusion_proof_element_is_detected(seq: int, element: int) -> None:
    lines = export_lines()
    event = json.loads(lines[event_line_index(seq)])
    proof = event["inclusion"]["proof"]
    proof[element] = base64.b64encode(flip_bit(base64.b64decode(proof[element]))).decode()
    lines[event_line_index(seq)] = json.dumps(event, ensure_ascii=False)
    report = verify_lines(lines)
    assert detected(report)
    assert report.first_bad_seq == seq


def test_altering_one_consistency_proof_element_is_detected() -> None:
    lines = export_lines()
    line_number = 1 + SIZE + 2
    checkpoint = json.loads(lines[line_number])
    checkpoint["consistency_proof"][0] = base64.b64encode(
        flip_bit(base64.b64decode(checkpoint["consistency_proof"][0]))
    ).decode()
    lines[line_number] = json.dumps(checkpoint)
    assert detected(verify_lines(lines))


DECOY_REASON = (
    "bug in app/audit/offline.py (since 60e7eef): `report.first_bad_seq = min(misplaced)` overwrites the "
    "sound bound from verify_entries with the first event whose inclusion proof fails; proofs are optional "
    "and any unaltered event's proof can be corrupted, so the report names a decoy after the real damage"
)


def corrupt_proof(lines: list[str], seq: int) -> None:
    event = json.loads(lines[event_line_index(seq)])
    proof = event["inclusion"]["proof"]
    proof[0] = base64.b64encode(flip_bit(base64.b64decode(proof[0]))).decode()
    lines[event_line_index(seq)] = json.dumps(event, ensure_ascii=False)


def test_a_corrupted_later_proof_does_not_hide_a_deleted_event_in_an_export() -> None:
    lines = export_lines()
    corrupt_proof(lines, 50)
    del lines[event_line_index(10)]
    report = verify_lines(lines)
    assert detected(report)
    assert report.first_bad_seq == 10, report.problems


def test_an_edited_export_event_without_its_proof_is_located_at_or_before_it() -> None:
    lines = export_lines()
    event = json.loads(lines[event_line_index(20)])
    event["action"] += "x"
    del event["inclusion"]  # optional in the format: its absence is not reported
    lines[event_line_index(20)] = json.dumps(event, ensure_ascii=False)
    corrupt_proof(lines, 60)
    report = verify_lines(lines)
    assert detected(report)
    assert report.first_bad_seq is not None
    assert report.first_bad_seq <= 20, report.problems
