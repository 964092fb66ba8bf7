"""Blobs that no attachment row names: what a process killed mid-submission leaves behind.

A blob is written (and made durable) before the request's transaction commits
the `tip_attachments` row that names it. A failed request deletes its blobs
through `on_rollback`; a killed process cannot. What remains is ciphertext
whose key was only ever in the uncommitted row: nobody can read it, but it
fills the disk and every backup would carry it.

An orphan looks exactly like an upload still streaming, on this node or on
another that shares the database, except for its age. So only blobs not
written to for longer than `older_than` are candidates, and the caller passes
the longest an upload may last. A candidate's row is looked up again right
before it is deleted, so a row committed after the listing keeps its blob.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import ColumnElement, SQLColumnExpression, and_, delete, exists, select
from sqlalchemy.orm import aliased

from app.intake import models as _registers_attachment_blobs  # noqa: F401 - TipAttachment.id
from app.kit.blobs import BlobChunk, BlobStore, blob_naming_columns, chunk_days_certainly_before
from app.kit.config import Settings
from app.kit.db import Database

# Bounds the size of each IN (...) list sent to the database.
_ID_BATCH = 500


@dataclass(frozen=True, slots=True)
class OrphanBlobs:
    """Orphans found in each kind of storage: files in the data dir, chunk sets in `blob_chunks`."""

    files: frozenset[uuid.UUID]
    chunked: frozenset[uuid.UUID]

    def __len__(self) -> int:
        return len(self.files) + len(self.chunked)


def _batches(ids: Iterable[uuid.UUID]) -> Iterator[list[uuid.UUID]]:
    batch: list[uuid.UUID] = []
    for blob_id in ids:
        batch.append(blob_id)
        if len(batch) == _ID_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def blob_ids_named_by_rows(database: Database, candidates: Collection[uuid.UUID]) -> set[uuid.UUID]:
    """Those of `candidates` that a row names (an attachment, a referral's bundle: every column
    registered with `register_blob_names`), committed, as seen now."""
    named: set[uuid.UUID] = set()
    for batch in _batches(candidates):
        with database.transaction() as session:
            for column in blob_naming_columns():
                named.update(session.scalars(select(column).where(column.in_(batch))))
    return named


def _no_row_names(blob_id: SQLColumnExpression[uuid.UUID]) -> ColumnElement[bool]:
    if not blob_naming_columns():  # never "no row names it" for want of knowing the rows
        raise RuntimeError("no column naming blobs is registered")
    return and_(*(~exists().where(column == blob_id) for column in blob_naming_columns()))


def _every_chunk_before(blob_id: SQLColumnExpression[uuid.UUID], day: dt.date) -> ColumnElement[bool]:
    younger = aliased(BlobChunk)
    return ~exists().where(and_(younger.blob_id == blob_id, younger.written_on >= day))


def _orphan_files(store: BlobStore, database: Database, cutoff: dt.datetime) -> frozenset[uuid.UUID]:
    idle = {
        blob_id
        for blob_id in store.blob_ids()
        if (written := store.last_written(blob_id)) is not None and written < cutoff
    }
    return frozenset(idle - blob_ids_named_by_rows(database, idle))


def _orphan_chunked(database: Database, cutoff: dt.datetime) -> frozenset[uuid.UUID]:
    day = chunk_days_certainly_before(cutoff)
    with database.transaction() as session:
        return frozenset(
            session.scalars(
                select(BlobChunk.blob_id)
                .distinct()
                .where(
                    BlobChunk.written_on < day,
                    _no_row_names(BlobChunk.blob_id),
                    _every_chunk_before(BlobChunk.blob_id, day),
                )
            )
        )


def find_orphan_blobs(
    settings: Settings, database: Database, *, older_than: dt.timedelta, now: dt.datetime | None = None
) -> OrphanBlobs:
    """Blobs, in the data dir and in `blob_chunks`, that no attachment row names and that
    nothing has written to for longer than `older_than`.

    Both kinds are looked at whatever `blob_storage` says now: a deployment that
    switched storage still has the other kind's orphans.
    """
    cutoff = (now or dt.datetime.now(dt.UTC)) - older_than
    return OrphanBlobs(
        files=_orphan_files(BlobStore(settings.blobs_dir), database, cutoff),
        chunked=_orphan_chunked(database, cutoff),
    )


def _remove_file_if_still_orphan(
    store: BlobStore, database: Database, blob_id: uuid.UUID, cutoff: dt.datetime
) -> bool:
    written = store.last_written(blob_id)
    if written is None or written >= cutoff:
        return False
    # Last, right before the unlink: a row committed since the listing keeps its file.
    if blob_ids_named_by_rows(database, [blob_id]):
        return False
    store.delete(blob_id)
    return True


def _remove_chunks_if_still_orphan(database: Database, blob_id: uuid.UUID, cutoff: dt.datetime) -> bool:
    day = chunk_days_certainly_before(cutoff)
    # One statement: the row and the age are checked by the same DELETE that removes the chunks.
    with database.transaction() as session:
        removed = session.execute(
            delete(BlobChunk)
            .where(
                BlobChunk.blob_id == blob_id,
                _no_row_names(BlobChunk.blob_id),
                _every_chunk_before(BlobChunk.blob_id, day),
            )
            .execution_options(synchronize_session=False)
        )
    return bool(getattr(removed, "rowcount", 0))


def sweep_orphan_blobs(
    settings: Settings, database: Database, *, older_than: dt.timedelta, now: dt.datetime | None = None
) -> int:
    """Delete the orphans `find_orphan_blobs` lists; returns how many blobs were removed.

    `older_than` must be at least the longest an upload may last: an upload still
    streaming somewhere has no row yet, and only its age tells it from an orphan.
    Safe to run on several nodes at once (each deletion is checked and idempotent).
    """
    now = now or dt.datetime.now(dt.UTC)
    cutoff = now - older_than
    orphans = find_orphan_blobs(settings, database, older_than=older_than, now=now)
    store = BlobStore(settings.blobs_dir)
    removed = sum(
        _remove_file_if_still_orphan(store, database, blob_id, cutoff) for blob_id in sorted(orphans.files)
    )
    removed += sum(
        _remove_chunks_if_still_orphan(database, blob_id, cutoff) for blob_id in sorted(orphans.chunked)
    )
    return removed
