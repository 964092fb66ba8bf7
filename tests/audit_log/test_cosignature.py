"""Witness cosignatures: C2SP tlog-cosignature v1, Ed25519 (app.audit_log.cosignature)."""

from __future__ import annotations

import base64
from hashlib import sha256

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.audit_log.checkpoint import (
    Checkpoint,
    CheckpointError,
    checkpoint_body,
    open_signed_checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    verifier_key,
)
from app.audit_log.cosignature import (
    WitnessKey,
    cosign,
    cosignatures_by,
    generate_witness_signer,
    note_with_cosignatures,
    open_cosignature,
    parse_witness_signer,
    parse_witness_verifier_key,
    witness_verifier_key,
)

ORIGIN = "daylight.test/audit"
LOG_KEY = Ed25519PrivateKey.generate()
CHECKPOINT = Checkpoint(origin=ORIGIN, tree_size=5, root_hash=sha256(b"root").digest(), time=1700000000)
OTHER_CHECKPOINT = Checkpoint(
    origin=ORIGIN, tree_size=5, root_hash=sha256(b"other").digest(), time=1700000000
)

W1_NAME, W2_NAME = "witness.test/w1", "witness.test/w2"
W1_PRIVATE, W2_PRIVATE = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
W1 = WitnessKey(W1_NAME, W1_PRIVATE.public_key())
W2 = WitnessKey(W2_NAME, W2_PRIVATE.public_key())
# The timestamp of the example in c2sp.org/tlog-cosignature.
SPEC_TIMESTAMP = 1679315147
# The witness line of that example: its verifier key is not published, so only its layout can be checked.
SPEC_WITNESS_LINE = (
    "— witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZ"
    "qhf5nNo0xUe+mbIUBkBIfZ+qnA=="
)


def decoded_line(line: str) -> tuple[str, bytes]:
    """(name, signature bytes) of a signature line, decoded without the module."""
    assert line.startswith("\u2014 ")
    name, encoded = line[2:].rstrip("\n").split(" ")
    return name, base64.b64decode(encoded, validate=True)


def line_of(name: str, signature: bytes) -> str:
    return f"— {name} {base64.b64encode(signature).decode()}\n"


# --- Round trip and the wire format, checked independently ------------------------------------------------


def test_round_trip() -> None:
    line = cosign(CHECKPOINT, W1_PRIVATE, W1_NAME, 1700000100)
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert open_cosignature(CHECKPOINT, line, W1) == 1700000100
    assert open_cosignature(CHECKPOINT, line.rstrip("\n"), W1) == 1700000100
    assert cosignatures_by(CHECKPOINT, [line], [W1, W2]) == {W1_NAME: 1700000100}


def test_signed_message_is_the_spec_layout_checked_with_raw_ed25519() -> None:
    line = cosign(CHECKPOINT, W1_PRIVATE, W1_NAME, SPEC_TIMESTAMP)
    name, signature = decoded_line(line)
    assert name == W1_NAME
    assert len(signature) == 4 + 8 + 64
    raw_public = W1_PRIVATE.public_key().public_bytes_raw()
    assert signature[:4] == sha256(W1_NAME.encode() + b"\n" + b"\x04" + raw_public).digest()[:4]
    assert signature[4:12] == SPEC_TIMESTAMP.to_bytes(8, "big")
    body = b"daylight.test/audit\n5\n" + base64.b64encode(sha256(b"root").digest()) + b"\ntime 1700000000\n"
    assert checkpoint_body(CHECKPOINT).encode() == body
    message = b"cosignature/v1\ntime 1679315147\n" + body
    W1_PRIVATE.public_key().verify(signature[12:], message)  # raises InvalidSignature if wrong
    with pytest.raises(InvalidSignature):  # the header line is part of what is signed
        W1_PRIVATE.public_key().verify(signature[12:], body)


def test_the_spec_example_line_has_our_layout_and_is_ignored_as_an_unknown_key() -> None:
    name, signature = decoded_line(SPEC_WITNESS_LINE)
    assert name == "witness.example.com/w1"
    assert len(signature) == 76
    assert int.from_bytes(signature[4:12], "big") == SPEC_TIMESTAMP
    assert cosignatures_by(CHECKPOINT, [SPEC_WITNESS_LINE], [W1, W2]) == {}
    # A trusted key under that very name, but not the spec's key: the key ID differs, so still ignored.
    assert cosignatures_by(CHECKPOINT, [SPEC_WITNESS_LINE], [WitnessKey(name, W1.public_key)]) == {}


def test_the_key_id_uses_type_byte_4() -> None:
    raw_public = W1.public_key.public_bytes_raw()
    assert W1.key_id == sha256(W1_NAME.encode() + b"\n\x04" + raw_public).digest()[:4]
    assert W1.key_id != sha256(W1_NAME.encode() + b"\n\x01" + raw_public).digest()[:4]


# --- Keys that are not the one asked for ------------------------------------------------------------------


def test_a_cosignature_by_another_key_or_name_is_ignored() -> None:
    by_w2 = cosign(CHECKPOINT, W2_PRIVATE, W2_NAME, 1)
    w2_key_under_w1_name = cosign(CHECKPOINT, W2_PRIVATE, W1_NAME, 1)  # name matches W1, key ID does not
    w1_key_under_other_name = cosign(CHECKPOINT, W1_PRIVATE, "witness.test/impostor", 1)  # key ID differs
    lines = [by_w2, w2_key_under_w1_name, w1_key_under_other_name]
    assert cosignatures_by(CHECKPOINT, lines, [W1]) == {}
    for line in lines:
        with pytest.raises(CheckpointError, match="not a cosignature by the key"):
            open_cosignature(CHECKPOINT, line, W1)


def test_the_logs_own_signature_never_counts_as_a_cosignature() -> None:
    note = sign_checkpoint(CHECKPOINT, LOG_KEY)
    # Even a witness "key" that is the log key under the origin name: type 0x01 and 0x04 IDs differ.
    impostor = WitnessKey(ORIGIN, LOG_KEY.public_key())
    assert cosignatures_by(CHECKPOINT, note, [impostor]) == {}


def test_several_witnesses_and_a_note() -> None:
    note = sign_checkpoint(CHECKPOINT, LOG_KEY)
    lines = [cosign(CHECKPOINT, W1_PRIVATE, W1_NAME, 10), cosign(CHECKPOINT, W2_PRIVATE, W2_NAME, 20)]
    cosigned = note_with_cosignatures(note, lines)
    assert cosignatures_by(CHECKPOINT, cosigned, [W1, W2]) == {W1_NAME: 10, W2_NAME: 20}
    assert cosignatures_by(CHECKPOINT, cosigned, [W2]) == {W2_NAME: 20}
    assert cosignatures_by(CHECKPOINT, note, [W1, W2]) == {}


def test_the_latest_of_two_cosignatures_by_one_witness_is_reported() -> None:
    lines = [cosign(CHECKPOINT, W1_PRIVATE, W1_NAME, 30), cosign(CHECKPOINT, W1_PRIVATE, W1_NAME, 10)]
    assert cosignatures_by(CHECKPOINT, lines, [W1]) == {W1_NAME: 30}


# --- Forgeries ----------------------------------------------------------------------------------------------


def test_a_tampered_timestamp_fails() -> None:
    name, signature = decoded_line(cosign(CHECKPOINT, W1_PRIVATE, W1_NAME, 1700000100))
    forged = line_of(name, signature[:4] + (1700000101).to_bytes(8, "big") + signature[12:])
    with pytest.raises(CheckpointError, match="does not verify"):
        open_cosignature(CHECKPOINT, forged, W1)
    with pytest.raises(CheckpointError, match="does not verify"):
        cosignatures_by(CHECKPOINT, [forged], [W1])


@pytest.mark.parametrize("position", [0, 4, 11, 12, 40, 75])
def test_any_flipped_byte_fails(position: int) -> None:
    name, signature = decoded_line(cosign(CHECKPOINT, W1_PRIVATE, W1_NAME, 1700000100))
    flipped = bytearray(signature)
    flipped[position] ^= 0x01
    with pytest.raises(CheckpointError):
        open_cosignature(CHECKPOINT, line_of(name, bytes(flipped)), W1)


def test_a_cosignature_of_another_checkpoint_fails() -> None:
    line = cosign(CHECKPOINT, W1_PRIVATE, W1_NAME, 1)
    with pytest.raises(CheckpointError, match="does not verify"):
        open_cosignature(OTHER_CHECKPOINT, line, W1)
    later = Checkpoint(origin=ORIGIN, tree_size=5, root_hash=CHECKPOINT.root_hash, time=CHECKPOINT.time + 1)
    with pytest.raises(CheckpointError, match="does not verify"):  # the time extension line is signed too
        open_cosignature(later, line, W1)


@pytest.mark.parametrize("length", [5, 12, 75, 77, 100])
def test_the_wrong_length_fails(length: int) -> None:
    name, signature = decoded_line(cosign(CHECKPOINT, W1_PRIVATE, W1_NAME, 1))
    wrong = (signature + bytes(100))[:length]
    with pytest.raises(CheckpointError, match=f"{length} bytes, not 76"):
        open_cosignature(CHECKPOINT, line_of(name, wrong), W1)
    with pytest.raises(CheckpointError, match=f"{length} bytes, not 76"):
        cosignatures_by(CHECKPOINT, [line_of(name, wrong)], [W1])


def test_a_timestamp_above_2_63_fails_even_with_a_valid_signature() -> None:
    timestamp = 2**63
    message = f"cosignature/v1\ntime {timestamp}\n{checkpoint_body(CHECKPOINT)}".encode()
    signature = W1.key_id + timestamp.to_bytes(8, "big") + W1_PRIVATE.sign(message)
    with pytest.raises(CheckpointError, match="2\\^63"):
        open_cosignature(CHECKPOINT, line_of(W1_NAME, signature), W1)


@pytest.mark.parametrize("timestamp", [-1, 2**63, True, 1.0])
def test_cosign_refuses_out_of_range_timestamps(timestamp: int) -> None:
    with pytest.raises(CheckpointError, match="timestamp"):
        cosign(CHECKPOINT, W1_PRIVATE, W1_NAME, timestamp)


def test_cosign_accepts_the_extreme_timestamps() -> None:
    for timestamp in (0, 2**63 - 1):
        assert (
            open_cosignature(CHECKPOINT, cosign(CHECKPOINT, W1_PRIVATE, W1_NAME, timestamp), W1) == timestamp
        )


@pytest.mark.parametrize(
    "line",
    ["", "garbage", "- witness.test/w1 AAAA", "— witness.test/w1", "— witness.test/w1 !!!!", "— a b c"],
)
def test_malformed_lines_are_refused(line: str) -> None:
    with pytest.raises(CheckpointError):
        open_cosignature(CHECKPOINT, line, W1)
    with pytest.raises(CheckpointError):
        cosignatures_by(CHECKPOINT, [line], [W1])


def test_a_note_for_another_checkpoint_is_refused() -> None:
    with pytest.raises(CheckpointError, match="not this checkpoint"):
        cosignatures_by(CHECKPOINT, sign_checkpoint(OTHER_CHECKPOINT, LOG_KEY), [W1])


# --- Verifier keys and signer keys -------------------------------------------------------------------------


def test_verifier_key_round_trip() -> None:
    text = witness_verifier_key(W1.public_key, W1_NAME)
    name, key_id_hex, encoded = text.split("+", 2)
    assert (name, key_id_hex) == (W1_NAME, W1.key_id.hex())
    assert base64.b64decode(encoded) == b"\x04" + W1.public_key.public_bytes_raw()
    parsed = parse_witness_verifier_key(text)
    assert parsed.name == W1_NAME
    assert parsed.public_key.public_bytes_raw() == W1.public_key.public_bytes_raw()


def _vkey(name: str, key_id: bytes, material: bytes) -> str:
    return f"{name}+{key_id.hex()}+{base64.b64encode(material).decode()}"


def test_verifier_key_rejects_malformed_strings() -> None:
    raw = W1.public_key.public_bytes_raw()
    good = witness_verifier_key(W1.public_key, W1_NAME)
    log_style_id = sha256(W1_NAME.encode() + b"\n\x01" + raw).digest()[:4]
    bad = [
        "",
        W1_NAME,
        f"{W1_NAME}+{W1.key_id.hex()}",
        good.replace(W1.key_id.hex(), "0" * 8),  # key ID does not match
        good.replace(W1.key_id.hex(), W1.key_id.hex()[:7]),  # 7 hex digits
        "has space" + good[len(W1_NAME) :],
        good + "=",  # not canonical base64
        good[:-4],  # truncated key
        _vkey(W1_NAME, W1.key_id, b"\x04" + raw[:31]),  # 31-byte key
        _vkey(W1_NAME, W1.key_id, b"\x04" + raw + b"\x00"),  # 33-byte key
        _vkey(W1_NAME, log_style_id, b"\x01" + raw),  # a log (0x01) key, consistent in itself
        _vkey(W1_NAME, W1.key_id, b"\x01" + raw),  # 0x01 type byte with a 0x04 key ID
    ]
    for text in bad:
        with pytest.raises(CheckpointError):
            parse_witness_verifier_key(text)
    with pytest.raises(CheckpointError):
        parse_witness_verifier_key(None)  # type: ignore[arg-type]


def test_keys_of_the_two_kinds_do_not_cross() -> None:
    log_vkey = verifier_key(LOG_KEY.public_key(), ORIGIN)
    with pytest.raises(CheckpointError, match="0x04"):
        parse_witness_verifier_key(log_vkey)
    with pytest.raises(CheckpointError, match="0x01"):
        parse_verifier_key(witness_verifier_key(W1.public_key, W1_NAME))


def test_signer_round_trip() -> None:
    signer, vkey = generate_witness_signer(W1_NAME)
    assert signer.startswith(f"PRIVATE+KEY+{W1_NAME}+")
    name, private_key = parse_witness_signer(signer)
    assert name == W1_NAME
    key = parse_witness_verifier_key(vkey)
    assert open_cosignature(CHECKPOINT, cosign(CHECKPOINT, private_key, name, 7), key) == 7
    # The seed is stored, and it is the key that signs.
    _, _, _, key_id_hex, encoded = signer.split("+", 4)
    assert base64.b64decode(encoded) == b"\x04" + private_key.private_bytes_raw()
    assert key_id_hex == key.key_id.hex()


def test_signer_rejects_malformed_keys_without_echoing_them() -> None:
    signer, vkey = generate_witness_signer(W1_NAME)
    _, _, name, key_id_hex, encoded = signer.split("+", 4)
    seed = base64.b64decode(encoded)[1:]
    bad = [
        vkey,  # a verifier key is not a signer key
        signer[len("PRIVATE+KEY+") :],
        "PRIVATE+KEY+",
        signer.replace(key_id_hex, "0" * 8),
        "PRIVATE+KEY+" + _vkey(name, bytes.fromhex(key_id_hex), b"\x01" + seed),
        "PRIVATE+KEY+" + _vkey(name, bytes.fromhex(key_id_hex), b"\x04" + seed[:31]),
        f"PRIVATE+KEY+other.test/w+{key_id_hex}+{encoded}",  # the ID does not match this name
    ]
    for text in bad:
        with pytest.raises(CheckpointError) as raised:
            parse_witness_signer(text)
        assert encoded not in str(raised.value)
        assert base64.b64encode(seed).decode() not in str(raised.value)


def test_a_name_that_cannot_be_a_key_name_is_refused() -> None:
    with pytest.raises(CheckpointError):
        generate_witness_signer("has space")
    with pytest.raises(CheckpointError):
        cosign(CHECKPOINT, W1_PRIVATE, "plus+sign", 1)


# --- Carrying cosignatures in the note ---------------------------------------------------------------------


def test_note_with_cosignatures_still_opens_as_a_log_checkpoint() -> None:
    note = sign_checkpoint(CHECKPOINT, LOG_KEY)
    line1 = cosign(CHECKPOINT, W1_PRIVATE, W1_NAME, 1)
    line2 = cosign(CHECKPOINT, W2_PRIVATE, W2_NAME, 2)
    cosigned = note_with_cosignatures(note, [line1, line2.rstrip("\n")])
    assert cosigned == note + line1 + line2
    assert open_signed_checkpoint(cosigned, LOG_KEY.public_key(), origin=ORIGIN) == CHECKPOINT
    # A witness's whole response body works as well, and appending again repeats nothing.
    assert note_with_cosignatures(note, line1 + line2) == cosigned
    assert note_with_cosignatures(cosigned, [line2, line1]) == cosigned


@pytest.mark.parametrize("bad_line", ["", "not a signature", "— a b c", "— w1 AAAA\n— w2 AAAA"])
def test_note_with_cosignatures_refuses_malformed_lines(bad_line: str) -> None:
    note = sign_checkpoint(CHECKPOINT, LOG_KEY)
    with pytest.raises(CheckpointError):
        note_with_cosignatures(note, [bad_line])


def test_note_with_cosignatures_refuses_a_malformed_note_and_too_many_lines() -> None:
    note = sign_checkpoint(CHECKPOINT, LOG_KEY)
    with pytest.raises(CheckpointError):
        note_with_cosignatures(checkpoint_body(CHECKPOINT), [])
    many = [cosign(CHECKPOINT, W1_PRIVATE, W1_NAME, timestamp) for timestamp in range(100)]
    with pytest.raises(CheckpointError, match="more than 100"):
        note_with_cosignatures(note, many)
