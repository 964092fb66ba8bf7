"""The canonical encoding the Merkle tree commits to: one byte string per event, however it is computed."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid

from app.audit_log.events import ENTRY_FORMAT, canonical_entry, format_time, leaf_hashes_of_rows
from app.audit_log.merkle import leaf_hash

AWKWARD_TEXT = [
    "",
    "plain",
    'quote " inside',
    "back\\slash",
    "line\nbreak\ttab",
    "\x00\x1f\x7f",
    "نۇر",
    "李明",
    "🙂 emoji",
    '","injected":"',
    "\u2028\u2029",
    "null",
]


def random_event(
    rng: random.Random, seq: int
) -> tuple[int, dt.datetime, uuid.UUID | None, str | None, str | None, str, str | None, str | None, str, str]:
    def text(nullable: bool) -> str | None:
        if nullable and rng.random() < 0.2:
            return None
        return rng.choice(AWKWARD_TEXT) + rng.choice(AWKWARD_TEXT)

    moment = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=rng.randrange(10**14))
    actor_id = None if rng.random() < 0.2 else uuid.UUID(int=rng.getrandbits(128), version=4)
    details = json.dumps({"note": text(False)}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return (
        seq,
        moment,
        actor_id,
        text(True),
        text(True),
        text(False) or "x",
        text(True),
        text(True),
        rng.choice(["success", "failure", "denied"]),
        details,
    )


def as_sqlite_row(event: tuple) -> tuple:  # type: ignore[type-arg]
    """The same event as SQLite's driver hands it back: stored text for times and UUIDs."""
    seq, moment, actor_id, *rest = event
    return (
        seq,
        moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
        None if actor_id is None else actor_id.hex,
        *rest,
    )


def test_the_entry_is_compact_json_of_every_column() -> None:
    rng = random.Random(1)
    for seq in range(1, 200):
        event = random_event(rng, seq)
        expected = json.dumps(
            [
                ENTRY_FORMAT,
                seq,
                format_time(event[1]),
                None if event[2] is None else str(event[2]),
                *event[3:],
            ],
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
        assert canonical_entry(*event) == expected
        assert canonical_entry(*as_sqlite_row(event)) == expected


def test_the_fast_leaf_hashes_equal_the_canonical_ones_on_both_drivers_forms() -> None:
    rng = random.Random(2)
    events = [random_event(rng, seq) for seq in range(1, 2000)]
    expected = [leaf_hash(canonical_entry(*event)) for event in events]
    assert leaf_hashes_of_rows(events) == expected
    assert leaf_hashes_of_rows([as_sqlite_row(event) for event in events]) == expected


def test_a_quote_in_a_stored_time_cannot_shift_bytes_between_fields() -> None:
    """An edited row whose time text carries JSON syntax must not encode to another row's entry."""
    original = as_sqlite_row(random_event(random.Random(3), 1))
    forged_time = '2026-01-01 00:00:00.00000"'  # the length and shape the fast path looks for
    forged = (original[0], forged_time, *original[2:])
    assert leaf_hashes_of_rows([forged]) == [leaf_hash(canonical_entry(*forged))]
    assert leaf_hashes_of_rows([forged]) != leaf_hashes_of_rows([original])
