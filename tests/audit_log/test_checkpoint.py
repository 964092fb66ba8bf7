"""Signed checkpoints: C2SP tlog-checkpoint in a C2SP signed note, Ed25519 (app.audit_log.checkpoint)."""

from __future__ import annotations

import base64
from hashlib import sha256

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit_log.checkpoint import (
    Checkpoint,
    CheckpointError,
    VerifierKey,
    checkpoint_body,
    note_key_id,
    open_signed_checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    signing_key_from_seed,
    verifier_key,
)

ORIGIN = "daylight.test/audit"
KEY = signing_key_from_seed(bytes(range(32)))
PUBLIC_KEY = KEY.public_key()
OTHER_KEY = signing_key_from_seed(bytes(range(1, 33)))
CHECKPOINT = Checkpoint(origin=ORIGIN, tree_size=5, root_hash=bytes(32), time=1700000000)

# Computed once with this module and pinned: any change to the wire format shows up here.
EXPECTED_BODY = "daylight.test/audit\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\ntime 1700000000\n"
EXPECTED_SIGNATURE_LINE = (
    "— daylight.test/audit "
    "YY/YMINOlKimXOnI2XRO7kH22Rv0mex/6GO5wMG8y5Q/dA/pF8PdXP5m5slpT0DwhVzbbiB2KKswnc+sduy5cmJHig4=\n"
)
EXPECTED_NOTE = EXPECTED_BODY + "\n" + EXPECTED_SIGNATURE_LINE
EXPECTED_VERIFIER_KEY = "daylight.test/audit+618fd830+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"


def signed(checkpoint: Checkpoint = CHECKPOINT, key: Ed25519PrivateKey = KEY) -> str:
    return sign_checkpoint(checkpoint, key)


def open_note(note: str, origin: str = ORIGIN) -> Checkpoint:
    return open_signed_checkpoint(note, PUBLIC_KEY, origin=origin)


def foreign_signature_line(body: str, key: Ed25519PrivateKey, name: str) -> str:
    """A signature line over ``body`` by some other key, written independently of the module."""
    raw_public = key.public_key().public_bytes_raw()
    key_id = sha256(name.encode() + b"\n\x01" + raw_public).digest()[:4]
    return f"— {name} {base64.b64encode(key_id + key.sign(body.encode())).decode()}\n"


# --- Known answer and round trip -------------------------------------------------------------------------


def test_known_answer_for_a_fixed_seed() -> None:
    assert checkpoint_body(CHECKPOINT) == EXPECTED_BODY
    assert signed() == EXPECTED_NOTE
    assert verifier_key(PUBLIC_KEY, ORIGIN) == EXPECTED_VERIFIER_KEY


def test_known_answer_signature_line_checks_out_independently() -> None:
    # Public key of the RFC 8032 seed 00 01 .. 1f, as published in other Ed25519 test suites.
    raw_public = PUBLIC_KEY.public_bytes_raw()
    assert raw_public.hex() == "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    body, blank, signature_line = EXPECTED_NOTE.partition("\n\n")
    assert blank == "\n\n"
    body += "\n"
    assert body == EXPECTED_BODY
    assert signature_line.startswith("\u2014 ")
    name, encoded = signature_line[2:].rstrip("\n").split(" ")
    assert name == ORIGIN
    decoded = base64.b64decode(encoded, validate=True)
    assert len(decoded) == 4 + 64
    key_id, signature = decoded[:4], decoded[4:]
    assert key_id == sha256(ORIGIN.encode() + b"\n" + b"\x01" + raw_public).digest()[:4]
    assert key_id == note_key_id(ORIGIN, PUBLIC_KEY)
    PUBLIC_KEY.verify(signature, body.encode())  # raises InvalidSignature if wrong


def test_round_trip() -> None:
    for checkpoint in [
        CHECKPOINT,
        Checkpoint(origin=ORIGIN, tree_size=0, root_hash=sha256(b"").digest(), time=0),
        Checkpoint(origin="daylight.example/audit", tree_size=2**63 - 1, root_hash=b"\xff" * 32, time=2**40),
        Checkpoint(origin="ünïcode.example/lög", tree_size=1, root_hash=bytes(range(32)), time=1),
    ]:
        assert open_signed_checkpoint(signed(checkpoint), PUBLIC_KEY, origin=checkpoint.origin) == checkpoint


def test_signing_key_from_seed_needs_32_bytes() -> None:
    for seed in (b"", bytes(31), bytes(33)):
        with pytest.raises(ValueError, match="32 bytes"):
            signing_key_from_seed(seed)


# --- Checkpoint values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "origin",
    [
        "",
        "has space",
        "tab\there",
        "new\nline",
        "plus+sign",
        "nbsp\u00a0x",
        "ctrl\x01",
        "em\u2003space",
        "\ud800",
    ],
)
def test_checkpoint_refuses_origins_that_cannot_be_key_names(origin: str) -> None:
    with pytest.raises(CheckpointError, match="origin"):
        Checkpoint(origin=origin, tree_size=1, root_hash=bytes(32), time=1)


@pytest.mark.parametrize(
    ("tree_size", "root_hash", "time"),
    [
        (-1, bytes(32), 1),
        (2**63, bytes(32), 1),
        (True, bytes(32), 1),
        (1, bytes(31), 1),
        (1, bytes(33), 1),
        (1, bytearray(32), 1),
        (1, bytes(32), -1),
        (1, bytes(32), 2**63),
    ],
)
def test_checkpoint_refuses_out_of_range_fields(tree_size: int, root_hash: bytes, time: int) -> None:
    with pytest.raises(CheckpointError):
        Checkpoint(origin=ORIGIN, tree_size=tree_size, root_hash=root_hash, time=time)


# --- Forgeries and foreign keys --------------------------------------------------------------------------


def test_a_forged_signature_is_refused() -> None:
    line_start = EXPECTED_NOTE.index("\u2014")
    _, _, encoded = EXPECTED_NOTE[line_start:].rstrip("\n").split(" ")
    for position in (4, 20, 67):  # inside the signature, after the key ID
        decoded = bytearray(base64.b64decode(encoded))
        decoded[position] ^= 0x01
        forged = EXPECTED_NOTE[:line_start] + f"— {ORIGIN} {base64.b64encode(decoded).decode()}\n"
        with pytest.raises(CheckpointError, match="does not verify"):
            open_note(forged)


def test_a_signature_by_another_key_is_refused() -> None:
    with pytest.raises(CheckpointError, match="no signature by the key"):
        open_note(signed(key=OTHER_KEY))


def test_a_signature_with_our_key_id_but_another_keys_signature_is_refused() -> None:
    our_key_id = note_key_id(ORIGIN, PUBLIC_KEY)
    impostor = OTHER_KEY.sign(EXPECTED_BODY.encode())
    note = EXPECTED_BODY + f"\n— {ORIGIN} {base64.b64encode(our_key_id + impostor).decode()}\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        open_note(note)


@pytest.mark.parametrize(
    ("line", "replacement"),
    [
        ("\n5\n", "\n6\n"),
        ("\n5\n", "\n4\n"),
        ("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
        ("time 1700000000", "time 1700000001"),
        ("time 1700000000", "time 1600000000"),
    ],
)
def test_editing_the_body_after_signing_is_detected(line: str, replacement: str) -> None:
    assert line in EXPECTED_BODY
    edited = EXPECTED_NOTE.replace(line, replacement, 1)
    with pytest.raises(CheckpointError, match="does not verify"):
        open_note(edited)


def test_the_wrong_origin_is_refused() -> None:
    with pytest.raises(CheckpointError, match="origin"):
        open_note(EXPECTED_NOTE, origin="daylight.other/audit")
    # Signed by our key, but for another log: still not our checkpoint.
    other_log = Checkpoint(origin="daylight.other/audit", tree_size=5, root_hash=bytes(32), time=1700000000)
    with pytest.raises(CheckpointError, match="origin"):
        open_note(signed(other_log))


def test_an_invalid_expected_origin_is_refused() -> None:
    with pytest.raises(CheckpointError, match="origin"):
        open_note(EXPECTED_NOTE, origin="")


def test_our_signature_among_foreign_ones_is_accepted() -> None:
    witness = foreign_signature_line(EXPECTED_BODY, OTHER_KEY, "witness.example/w1")
    same_name_other_key = foreign_signature_line(EXPECTED_BODY, OTHER_KEY, ORIGIN)
    unknown_garbage_signature = f"— someone.example {base64.b64encode(b'0123456789').decode()}\n"
    for extra in (witness, same_name_other_key, unknown_garbage_signature):
        assert open_note(EXPECTED_NOTE + extra) == CHECKPOINT
        assert open_note(EXPECTED_BODY + "\n" + extra + EXPECTED_SIGNATURE_LINE) == CHECKPOINT


def test_only_foreign_signatures_are_refused() -> None:
    witness = foreign_signature_line(EXPECTED_BODY, OTHER_KEY, "witness.example/w1")
    same_name_other_key = foreign_signature_line(EXPECTED_BODY, OTHER_KEY, ORIGIN)
    # Our key, but under another name: a different key as far as the note format is concerned.
    our_key_other_name = foreign_signature_line(EXPECTED_BODY, KEY, "daylight.test/other")
    with pytest.raises(CheckpointError, match="no signature by the key"):
        open_note(EXPECTED_BODY + "\n" + witness + same_name_other_key + our_key_other_name)


def test_a_bad_signature_by_our_key_next_to_a_good_one_is_refused() -> None:
    forged = signed(Checkpoint(origin=ORIGIN, tree_size=6, root_hash=bytes(32), time=1700000000))
    forged_line = forged[forged.index("\u2014") :]
    with pytest.raises(CheckpointError, match="does not verify"):
        open_note(EXPECTED_NOTE + forged_line)


# --- Malformed notes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("note", "message"),
    [
        (EXPECTED_BODY + EXPECTED_SIGNATURE_LINE, "no blank line"),  # missing blank line
        (EXPECTED_NOTE + "garbage", "trailing data"),
        (EXPECTED_NOTE + "garbage\n", "not a signature line"),
        (EXPECTED_NOTE + "\n", "no signature lines"),
        (EXPECTED_NOTE.rstrip("\n"), "trailing data"),
        (EXPECTED_BODY + "\n", "no signature lines"),
        (EXPECTED_BODY, "no blank line"),
        ("", "no blank line"),
        (EXPECTED_NOTE.replace("\n", "\r\n"), "control characters"),
        (EXPECTED_NOTE.replace("\u2014 ", "- "), "not a signature line"),
        (EXPECTED_NOTE.replace("\u2014 ", "\u2014"), "not a signature line"),
        (EXPECTED_NOTE.replace(f"\u2014 {ORIGIN} ", f"\u2014 {ORIGIN}  "), "signature line"),
        (EXPECTED_NOTE.replace("\n\u2014", "\n\n\u2014"), "must not be empty"),  # two blank lines
        (EXPECTED_NOTE.replace("Hig4=", "Hig4"), "not valid base64"),
        (EXPECTED_NOTE.replace("Hig4=", "Hig5="), "not canonical base64"),
        (EXPECTED_NOTE.replace("Hig4=", "Hig4= "), "signature line"),
        ("\u2014 x AAAAAA==\n\n" + EXPECTED_SIGNATURE_LINE, "checkpoint"),
    ],
)
def test_malformed_notes_are_refused(note: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        open_note(note)


def test_a_truncated_signature_by_our_key_is_refused() -> None:
    our_key_id = note_key_id(ORIGIN, PUBLIC_KEY)
    truncated = KEY.sign(EXPECTED_BODY.encode())[:63]
    note = EXPECTED_BODY + f"\n— {ORIGIN} {base64.b64encode(our_key_id + truncated).decode()}\n"
    with pytest.raises(CheckpointError, match="does not verify"):
        open_note(note)


def test_a_signature_too_short_to_hold_a_key_id_is_refused() -> None:
    short = f"— {ORIGIN} {base64.b64encode(b'abcd').decode()}\n"
    with pytest.raises(CheckpointError, match="key ID"):
        open_note(EXPECTED_NOTE + short)


def sign_raw_body(body: str) -> str:
    """Sign arbitrary body text with our key, bypassing Checkpoint's validation."""
    key_id = note_key_id(ORIGIN, PUBLIC_KEY)
    return f"{body}\n— {ORIGIN} {base64.b64encode(key_id + KEY.sign(body.encode())).decode()}\n"


ROOT_LINE = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (f"{ORIGIN}\n05\n{ROOT_LINE}\ntime 1\n", "leading zeros"),
        (f"{ORIGIN}\n+5\n{ROOT_LINE}\ntime 1\n", "leading zeros"),
        (f"{ORIGIN}\n-5\n{ROOT_LINE}\ntime 1\n", "leading zeros"),
        (f"{ORIGIN}\n 5\n{ROOT_LINE}\ntime 1\n", "leading zeros"),
        (f"{ORIGIN}\n5.0\n{ROOT_LINE}\ntime 1\n", "leading zeros"),
        (f"{ORIGIN}\n\u0665\n{ROOT_LINE}\ntime 1\n", "leading zeros"),  # ARABIC-INDIC DIGIT FIVE
        (f"{ORIGIN}\n9223372036854775808\n{ROOT_LINE}\ntime 1\n", "tree size"),
        (f"{ORIGIN}\n99999999999999999999\n{ROOT_LINE}\ntime 1\n", "tree size"),
        (f"{ORIGIN}\n5\n{ROOT_LINE}\ntime 01\n", "leading zeros"),
        (f"{ORIGIN}\n5\n{ROOT_LINE}\ntime -1\n", "leading zeros"),
        (f"{ORIGIN}\n5\n{ROOT_LINE}\ntime +1\n", "leading zeros"),
        (f"{ORIGIN}\n5\n{ROOT_LINE}\ntime  1\n", "leading zeros"),
        (f"{ORIGIN}\n5\n{ROOT_LINE}\ntime\n", "time"),
        (f"{ORIGIN}\n5\n{ROOT_LINE}\nTime 1\n", "time"),
        (f"{ORIGIN}\n5\n{ROOT_LINE}\n", "no time line"),
        (f"{ORIGIN}\n5\n{ROOT_LINE}\ntime 1\nextra line\n", "extension line"),
        (f"{ORIGIN}\n5\n{ROOT_LINE}\ntime 1\ntime 2\n", "extension line"),
        (f"{ORIGIN}\n5\n", "origin, a tree size and a root"),
        (f"{ORIGIN}\n5\n{base64.b64encode(bytes(30)).decode()}\ntime 1\n", "32 bytes, not 30"),
        (f"{ORIGIN}\n5\n{base64.b64encode(bytes(33)).decode()}\ntime 1\n", "32 bytes, not 33"),
        (f"{ORIGIN}\n5\n{ROOT_LINE.rstrip('=')}\ntime 1\n", "base64"),
        (f"{ORIGIN}\n5\n{ROOT_LINE[:-2]}B=\ntime 1\n", "canonical base64"),  # non-zero padding bits
        (f"{ORIGIN}\n5\n{'_' * 43}=\ntime 1\n", "base64"),  # URL-safe alphabet
        (f"bad origin\n5\n{ROOT_LINE}\ntime 1\n", "origin"),
    ],
)
def test_validly_signed_but_malformed_bodies_are_refused(body: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        open_note(sign_raw_body(body))


def test_the_same_body_signed_raw_is_accepted() -> None:
    # Guards the table above: it is the malformation, not sign_raw_body, that makes those fail.
    assert sign_raw_body(EXPECTED_BODY) == EXPECTED_NOTE
    assert open_note(sign_raw_body(f"{ORIGIN}\n0\n{ROOT_LINE}\ntime 0\n")).tree_size == 0


# --- Verifier keys ---------------------------------------------------------------------------------------


def test_verifier_key_round_trip() -> None:
    parsed = parse_verifier_key(EXPECTED_VERIFIER_KEY)
    assert parsed == VerifierKey(name=ORIGIN, public_key=PUBLIC_KEY)
    assert parsed.key_id == note_key_id(ORIGIN, PUBLIC_KEY) == bytes.fromhex("618fd830")
    name, public_key = parsed
    assert (name, public_key) == (ORIGIN, PUBLIC_KEY)
    assert parsed.public_key.public_bytes_raw() == PUBLIC_KEY.public_bytes_raw()
    assert verifier_key(parsed.public_key, parsed.name) == EXPECTED_VERIFIER_KEY
    assert parse_verifier_key(EXPECTED_VERIFIER_KEY.replace("618fd830", "618FD830")).name == ORIGIN
    # The parsed key opens the checkpoint.
    assert open_signed_checkpoint(EXPECTED_NOTE, parsed.public_key, origin=parsed.name) == CHECKPOINT


def test_verifier_key_format_matches_the_spec() -> None:
    name, key_id_hex, encoded = EXPECTED_VERIFIER_KEY.split("+", 2)
    assert "+" in encoded  # standard base64: the key part may itself contain '+'
    raw_public = PUBLIC_KEY.public_bytes_raw()
    assert name == ORIGIN
    assert bytes.fromhex(key_id_hex) == sha256(ORIGIN.encode() + b"\n\x01" + raw_public).digest()[:4]
    assert base64.b64decode(encoded) == b"\x01" + raw_public


SHORT_ED25519_KEY = base64.b64encode(b"\x01" + bytes(31)).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "verifier key is"),
        (f"{ORIGIN}+618fd830", "verifier key is"),
        (f"{ORIGIN}+618fd830+AQOh+extra", "base64"),
        (EXPECTED_VERIFIER_KEY.replace("618fd830", "618fd831"), "does not match"),
        (EXPECTED_VERIFIER_KEY.replace("618fd830", "618fd83"), "8 hex digits"),
        (EXPECTED_VERIFIER_KEY.replace("618fd830", " 618fd830"), "8 hex digits"),
        (EXPECTED_VERIFIER_KEY.replace(ORIGIN, "daylight.test/other"), "does not match"),
        (EXPECTED_VERIFIER_KEY.replace(ORIGIN, "bad name"), "name"),
        (EXPECTED_VERIFIER_KEY.replace("+AQ", "+Ag"), "Ed25519"),  # signature type 0x02
        (f"{ORIGIN}+618fd830+{SHORT_ED25519_KEY}", "Ed25519"),
        (f"{ORIGIN}+618fd830+AQOh!", "base64"),
    ],
)
def test_malformed_verifier_keys_are_refused(text: str, message: str) -> None:
    with pytest.raises(CheckpointError, match=message):
        parse_verifier_key(text)
