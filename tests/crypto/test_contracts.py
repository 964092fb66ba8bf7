"""Encrypted-column contracts bind table, column, row id and key version (app.crypto.contracts)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.crypto import sealing
from app.crypto.binding import bind
from app.crypto.contracts import ENCRYPTED_COLUMNS, EnvelopeColumn, SealedColumn, StreamColumn
from app.crypto.errors import DecryptionError
from app.intake import models as intake_models

PROPERTY = settings(max_examples=50, deadline=None, database=None)
SEALED_PROPERTY = settings(max_examples=30, deadline=None, database=None)

row_ids = st.text(max_size=40)
key_versions = st.integers(min_value=0, max_value=2**32 - 2)
keys = st.binary(min_size=32, max_size=32)
plaintexts = st.binary(max_size=256)


@dataclass(frozen=True)
class Scratch:
    envelope: EnvelopeColumn
    envelope_other_column: EnvelopeColumn
    envelope_other_table: EnvelopeColumn
    sealed: SealedColumn
    sealed_other_column: SealedColumn
    sealed_other_table: SealedColumn
    stream: StreamColumn
    stream_other_column: StreamColumn
    stream_other_table: StreamColumn


@pytest.fixture(scope="module")
def scratch() -> Iterator[Scratch]:
    """Contracts on tables that do not exist, taken out of the registry again afterwards."""
    made = Scratch(
        envelope=EnvelopeColumn("crypto_test_a", "envelope"),
        envelope_other_column=EnvelopeColumn("crypto_test_a", "envelope_2"),
        envelope_other_table=EnvelopeColumn("crypto_test_b", "envelope"),
        sealed=SealedColumn("crypto_test_a", "sealed"),
        sealed_other_column=SealedColumn("crypto_test_a", "sealed_2"),
        sealed_other_table=SealedColumn("crypto_test_b", "sealed"),
        stream=StreamColumn("crypto_test_a", "stream"),
        stream_other_column=StreamColumn("crypto_test_a", "stream_2"),
        stream_other_table=StreamColumn("crypto_test_b", "stream"),
    )
    try:
        yield made
    finally:
        for contract in vars(made).values():
            ENCRYPTED_COLUMNS.pop((contract.table, contract.column), None)


def _other_row(row_id: str) -> str:
    return row_id + "b" if row_id else "b"


# --- EnvelopeColumn ----------------------------------------------------------


@PROPERTY
@given(key=keys, plaintext=plaintexts, row_id=row_ids, key_version=key_versions)
def test_envelope_column_binds_row_column_table_and_version(
    scratch: Scratch, key: bytes, plaintext: bytes, row_id: str, key_version: int
) -> None:
    column = scratch.envelope
    sealed = column.seal(key, plaintext, row_id=row_id, key_version=key_version)
    assert column.open(key, sealed, row_id=row_id, key_version=key_version) == plaintext
    with pytest.raises(DecryptionError):
        column.open(key, sealed, row_id=_other_row(row_id), key_version=key_version)
    with pytest.raises(DecryptionError):
        column.open(key, sealed, row_id=row_id, key_version=key_version + 1)
    for other in (scratch.envelope_other_column, scratch.envelope_other_table):
        with pytest.raises(DecryptionError):
            other.open(key, sealed, row_id=row_id, key_version=key_version)


def test_envelope_column_row_a_vs_row_b(scratch: Scratch) -> None:
    key = bytes(range(32))
    sealed = scratch.envelope.seal(key, b"secret", row_id="a")
    assert scratch.envelope.open(key, sealed, row_id="a") == b"secret"
    with pytest.raises(DecryptionError):
        scratch.envelope.open(key, sealed, row_id="b")


# --- SealedColumn ------------------------------------------------------------


@SEALED_PROPERTY
@given(plaintext=plaintexts, row_id=row_ids, key_version=key_versions)
def test_sealed_column_binds_row_column_table_and_version(
    scratch: Scratch,
    hybrid_key: sealing.PrivateKey,
    plaintext: bytes,
    row_id: str,
    key_version: int,
) -> None:
    column = scratch.sealed
    sealed = column.seal(hybrid_key.public_key(), plaintext, row_id=row_id, key_version=key_version)
    assert column.open(hybrid_key, sealed, row_id=row_id, key_version=key_version) == plaintext
    with pytest.raises(DecryptionError):
        column.open(hybrid_key, sealed, row_id=_other_row(row_id), key_version=key_version)
    with pytest.raises(DecryptionError):
        column.open(hybrid_key, sealed, row_id=row_id, key_version=key_version + 1)
    for other in (scratch.sealed_other_column, scratch.sealed_other_table):
        with pytest.raises(DecryptionError):
            other.open(hybrid_key, sealed, row_id=row_id, key_version=key_version)


def test_sealed_column_row_a_vs_row_b(scratch: Scratch, hybrid_key: sealing.PrivateKey) -> None:
    sealed = scratch.sealed.seal(hybrid_key.public_key(), b"data key", row_id="a")
    assert scratch.sealed.open(hybrid_key, sealed, row_id="a") == b"data key"
    with pytest.raises(DecryptionError):
        scratch.sealed.open(hybrid_key, sealed, row_id="b")


# --- StreamColumn ------------------------------------------------------------


def _stream_blob(column: StreamColumn, key: bytes, plaintext: bytes, row_id: str, key_version: int) -> bytes:
    sink = io.BytesIO()
    size = column.encrypt_file(io.BytesIO(plaintext), sink, key, row_id=row_id, key_version=key_version)
    assert size == len(plaintext)
    return sink.getvalue()


@PROPERTY
@given(key=keys, plaintext=plaintexts, row_id=row_ids, key_version=key_versions)
def test_stream_column_binds_row_column_table_and_version(
    scratch: Scratch, key: bytes, plaintext: bytes, row_id: str, key_version: int
) -> None:
    column = scratch.stream
    blob = _stream_blob(column, key, plaintext, row_id, key_version)
    opened = column.decrypt_chunks(io.BytesIO(blob), key, row_id=row_id, key_version=key_version)
    assert b"".join(opened) == plaintext
    decryptor = column.decryptor(key, row_id=row_id, key_version=key_version)
    assert decryptor.update(blob) + decryptor.finalize() == plaintext

    wrong = [
        (column, _other_row(row_id), key_version),
        (column, row_id, key_version + 1),
        (scratch.stream_other_column, row_id, key_version),
        (scratch.stream_other_table, row_id, key_version),
    ]
    for other, other_row, other_version in wrong:
        with pytest.raises(DecryptionError):
            list(other.decrypt_chunks(io.BytesIO(blob), key, row_id=other_row, key_version=other_version))


def test_stream_column_encryptor_and_decryptor(scratch: Scratch) -> None:
    key = bytes(range(32))
    encryptor = scratch.stream.encryptor(key, row_id="a")
    blob = encryptor.header + encryptor.update(b"attachment") + encryptor.finalize()
    decryptor = scratch.stream.decryptor(key, row_id="a")
    assert decryptor.update(blob) + decryptor.finalize() == b"attachment"
    with pytest.raises(DecryptionError):
        scratch.stream.decryptor(key, row_id="b").update(blob)


# --- the registry and the real contracts ---------------------------------------


def test_contexts_differ_by_every_field_and_kind(scratch: Scratch) -> None:
    contexts = {
        scratch.envelope.context("a", 1),
        scratch.envelope.context("b", 1),
        scratch.envelope.context("a", 2),
        scratch.envelope_other_column.context("a", 1),
        scratch.envelope_other_table.context("a", 1),
        scratch.sealed.context("a", 1),
        scratch.stream.context("a", 1),
        # Same table and column, another kind of contract:
        bind("daylight/contract/v1", "EnvelopeColumn", "crypto_test_a", "stream", "a", 1),
    }
    assert len(contexts) == 8
    assert scratch.stream.context("a", 1) == bind(
        "daylight/contract/v1", "StreamColumn", "crypto_test_a", "stream", "a", 1
    )


def test_a_column_cannot_be_declared_twice(scratch: Scratch) -> None:
    with pytest.raises(ValueError, match="declared twice"):
        EnvelopeColumn("crypto_test_a", "envelope")
    with pytest.raises(ValueError, match="declared twice"):
        SealedColumn("crypto_test_a", "envelope")
    assert ENCRYPTED_COLUMNS[("crypto_test_a", "envelope")] is scratch.envelope


def test_real_contracts_do_not_open_each_others_values(hybrid_key: sealing.PrivateKey) -> None:
    key = bytes(32)
    narrative = intake_models.TIP_NARRATIVE.seal(key, b"what happened", row_id="tip-1")
    assert intake_models.TIP_NARRATIVE.open(key, narrative, row_id="tip-1") == b"what happened"
    for other in (intake_models.TIP_ANSWERS, intake_models.MESSAGE_BODY, intake_models.ATTACHMENT_DETAILS):
        with pytest.raises(DecryptionError):
            other.open(key, narrative, row_id="tip-1")

    # tips.sealed_data_key and tip_messages.sealed_data_key share a column name.
    data_key = intake_models.TIP_DATA_KEY.seal(hybrid_key.public_key(), key, row_id="tip-1")
    assert intake_models.TIP_DATA_KEY.open(hybrid_key, data_key, row_id="tip-1") == key
    for other_sealed in (intake_models.MESSAGE_DATA_KEY, intake_models.MESSAGE_FOR_SUBMITTER):
        with pytest.raises(DecryptionError):
            other_sealed.open(hybrid_key, data_key, row_id="tip-1")
