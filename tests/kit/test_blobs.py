"""Attachment storage: the database (several app nodes) behaves as the data dir does; files are
durable before their row commits; a crash's orphans are swept, and nothing else is."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import event, func, inspect, select, update
from sqlalchemy.orm import Session

from app.entrypoints.apps import create_intake_app
from app.entrypoints.organisation import init_organisation
from app.intake import orphans
from app.intake.models import TipAttachment
from app.intake.orphans import OrphanBlobs, find_orphan_blobs, sweep_orphan_blobs
from app.kit.blobs import BlobChunk, BlobStore, DatabaseBlobStore, chunk_days_certainly_before
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets
from app.schema import migrate, upgrade_to_head
from tests.conftest import CHEAP_ARGON2, Organisation
from tests.intake.factories import make_tip


def test_chunks_round_trip_and_delete(data_dir: Path, committed_database_url: str | None) -> None:
    settings = Settings(
        data_dir=data_dir,
        argon2=CHEAP_ARGON2,
        blob_storage="database",
        database_url=SecretStr(committed_database_url) if committed_database_url else None,
    )
    database = Database.from_settings(settings)
    init_organisation(settings, database)
    store = DatabaseBlobStore(database)
    blob_id, payload = uuid.uuid4(), os.urandom(DatabaseBlobStore.CHUNK_BYTES * 2 + 12345)
    writer = store.create(blob_id)
    for offset in range(0, len(payload), 70_000):
        writer.write(payload[offset : offset + 70_000])
    writer.close()
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(BlobChunk)) == 3
    reader = store.open(blob_id)
    assert b"".join(iter(lambda: reader.read(65_536), b"")) == payload
    store.delete(blob_id)
    assert not store.exists(blob_id)

    # A submission through the intake app lands in the database, not the data dir.
    with TestClient(create_intake_app(settings, database=database), base_url="https://intake") as intake:
        assert (
            intake.post(
                "/api/v1/tips",
                data={"narrative": "with a file"},
                files=[("files", ("a.bin", b"evidence" * 1000, "application/pdf"))],
            ).status_code
            == 201
        )
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(BlobChunk)) == 1
    assert not settings.blobs_dir.exists()
    database.engine.dispose()


# --- Durability: a blob is on disk, bytes and name, before the row naming it commits ---


def _fsync_recorder(monkeypatch: pytest.MonkeyPatch, events: list[tuple[str, str, int]]) -> None:
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), os.fstat(fd).st_size))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)


def test_a_blob_file_and_its_directory_are_fsynced_when_the_writer_closes(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str, int]] = []
    _fsync_recorder(monkeypatch, events)
    store = BlobStore(data_dir / "blobs")
    blob_id = uuid.uuid4()
    writer = store.create(blob_id)
    # Creating the blobs directory made its name durable in the data dir.
    assert [path for _, path, _ in events] == [str(data_dir)]
    events.clear()
    writer.write(b"ciphertext" * 1000)
    assert events == []
    writer.close()
    blob_path = str(data_dir / "blobs" / blob_id.hex)
    # The file's bytes (all of them: flushed first), then its name in the directory.
    assert [path for _, path, _ in events] == [blob_path, str(data_dir / "blobs")]
    assert events[0][1:] == (blob_path, 10_000)
    writer.close()
    assert len(events) == 2  # closing twice syncs nothing again

    events.clear()
    store.create(uuid.uuid4()).close()
    assert str(data_dir) not in [path for _, path, _ in events]  # the directory existed already


def test_a_submitted_blob_is_fsynced_before_the_row_naming_it_commits(
    intake_client: TestClient, organisation: Organisation, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str, int]] = []
    _fsync_recorder(monkeypatch, events)

    def record_commit(_session: Session) -> None:
        events.append(("commit", "", 0))

    event.listen(Session, "after_commit", record_commit)
    try:
        response = intake_client.post(
            "/api/v1/tips",
            data={"narrative": "with a file"},
            files=[("files", ("a.bin", b"evidence" * 1000, "application/pdf"))],
        )
    finally:
        event.remove(Session, "after_commit", record_commit)
    assert response.status_code == 201
    (blob,) = settings.blobs_dir.iterdir()
    synced = [index for index, (kind, path, _) in enumerate(events) if kind == "fsync"]
    # (The first upload also creates the blobs directory, and syncs the data dir first.)
    assert [events[index][1] for index in synced][-2:] == [str(blob), str(settings.blobs_dir)]
    assert events[-1] == ("commit", "", 0)  # the request's commit, after both
    assert synced[-1] < len(events) - 1


# --- Orphans: blobs no attachment row names, left by a killed process ---

HOUR = dt.timedelta(hours=1)


def _name_by_a_row(database: Database, tip_id: uuid.UUID, blob_id: uuid.UUID) -> None:
    with database.transaction() as session:
        session.add(
            TipAttachment(
                id=blob_id,
                tip_id=tip_id,
                details_encrypted=b"sealed",
                added_on=dt.datetime.now(dt.UTC).date(),
            )
        )


def _file_blob(settings: Settings, *, idle_for: dt.timedelta) -> uuid.UUID:
    blob_id = uuid.uuid4()
    writer = BlobStore(settings.blobs_dir).create(blob_id)
    writer.write(b"ciphertext")
    writer.close()
    last_write = (dt.datetime.now(dt.UTC) - idle_for).timestamp()
    os.utime(settings.blobs_dir / blob_id.hex, (last_write, last_write))
    return blob_id


def _chunked_blob(database: Database, *, written_days_ago: tuple[int, ...]) -> uuid.UUID:
    """A blob of one chunk per entry of `written_days_ago`, each dated that many days back."""
    blob_id = uuid.uuid4()
    writer = DatabaseBlobStore(database).create(blob_id)
    writer.write(b"c" * DatabaseBlobStore.CHUNK_BYTES * (len(written_days_ago) - 1) + b"tail")
    writer.close()
    today = dt.datetime.now(dt.UTC).date()
    with database.transaction() as session:
        for position, days in enumerate(written_days_ago):
            session.execute(
                update(BlobChunk)
                .where(BlobChunk.blob_id == blob_id, BlobChunk.position == position)
                .values(written_on=today - dt.timedelta(days=days))
            )
    return blob_id


def _chunk_blob_ids(database: Database) -> set[uuid.UUID]:
    with database.transaction() as session:
        return set(session.scalars(select(BlobChunk.blob_id).distinct()))


def test_a_chunk_counts_as_written_at_the_end_of_its_day() -> None:
    december_6 = dt.date(2026, 12, 6)
    assert chunk_days_certainly_before(dt.datetime(2026, 12, 6, 0, 0, tzinfo=dt.UTC)) == december_6
    assert chunk_days_certainly_before(dt.datetime(2026, 12, 6, 23, 59, tzinfo=dt.UTC)) == december_6
    # An aware time elsewhere is judged by its UTC day, the day chunks are stamped with.
    tokyo = dt.timezone(dt.timedelta(hours=9))
    assert chunk_days_certainly_before(dt.datetime(2026, 12, 7, 8, 0, tzinfo=tokyo)) == december_6


def test_the_sweep_removes_a_crashs_orphan_files_and_keeps_young_and_named_ones(
    settings: Settings, database: Database, organisation: Organisation, server_secrets: ServerSecrets
) -> None:
    with database.transaction() as session:
        tip_id, _ = make_tip(session, server_secrets)
    crashed = _file_blob(settings, idle_for=2 * HOUR)
    streaming = _file_blob(settings, idle_for=dt.timedelta(minutes=5))
    named = _file_blob(settings, idle_for=30 * 24 * HOUR)
    _name_by_a_row(database, tip_id, named)
    (settings.blobs_dir / "not-a-blob").write_bytes(b"left alone")

    found = find_orphan_blobs(settings, database, older_than=HOUR)
    assert found == OrphanBlobs(files=frozenset({crashed}), chunked=frozenset())
    assert sweep_orphan_blobs(settings, database, older_than=HOUR) == 1
    remaining = {path.name for path in settings.blobs_dir.iterdir()}
    assert remaining == {streaming.hex, named.hex, "not-a-blob"}
    assert sweep_orphan_blobs(settings, database, older_than=HOUR) == 0


def test_the_sweep_removes_a_crashs_orphan_chunks_and_keeps_young_and_named_ones(
    settings: Settings, database: Database, organisation: Organisation, server_secrets: ServerSecrets
) -> None:
    with database.transaction() as session:
        tip_id, _ = make_tip(session, server_secrets)
    crashed = _chunked_blob(database, written_days_ago=(3, 2))
    today = _chunked_blob(database, written_days_ago=(0,))
    # Began long ago, still written today: an upload could still be streaming it.
    still_written = _chunked_blob(database, written_days_ago=(2, 0))
    named = _chunked_blob(database, written_days_ago=(40,))
    _name_by_a_row(database, tip_id, named)

    assert find_orphan_blobs(settings, database, older_than=HOUR).chunked == {crashed}
    assert sweep_orphan_blobs(settings, database, older_than=HOUR) == 1
    assert _chunk_blob_ids(database) == {today, still_written, named}


def test_a_blob_whose_row_commits_after_the_listing_is_kept(
    settings: Settings,
    database: Database,
    organisation: Organisation,
    server_secrets: ServerSecrets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with database.transaction() as session:
        tip_id, _ = make_tip(session, server_secrets)
    file_blob = _file_blob(settings, idle_for=2 * HOUR)
    chunked_blob = _chunked_blob(database, written_days_ago=(2,))
    listed = orphans.find_orphan_blobs

    def rows_commit_right_after_the_listing(*args: Any, **kwargs: Any) -> OrphanBlobs:
        found = listed(*args, **kwargs)
        assert found == OrphanBlobs(files=frozenset({file_blob}), chunked=frozenset({chunked_blob}))
        _name_by_a_row(database, tip_id, file_blob)
        _name_by_a_row(database, tip_id, chunked_blob)
        return found

    monkeypatch.setattr(orphans, "find_orphan_blobs", rows_commit_right_after_the_listing)
    assert sweep_orphan_blobs(settings, database, older_than=HOUR) == 0
    assert (settings.blobs_dir / file_blob.hex).exists()
    assert _chunk_blob_ids(database) == {chunked_blob}


def test_a_file_written_to_after_the_listing_is_kept(
    settings: Settings, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    blob_id = _file_blob(settings, idle_for=2 * HOUR)
    listed = orphans.find_orphan_blobs

    def written_right_after_the_listing(*args: Any, **kwargs: Any) -> OrphanBlobs:
        found = listed(*args, **kwargs)
        os.utime(settings.blobs_dir / blob_id.hex)
        return found

    monkeypatch.setattr(orphans, "find_orphan_blobs", written_right_after_the_listing)
    assert sweep_orphan_blobs(settings, database, older_than=HOUR) == 0
    assert (settings.blobs_dir / blob_id.hex).exists()


# --- The migration that dates chunks ---


def test_the_written_on_migration_keeps_chunks_down_and_up_and_dates_old_ones_today(
    data_dir: Path, committed_database_url: str | None
) -> None:
    settings = Settings(
        data_dir=data_dir,
        argon2=CHEAP_ARGON2,
        database_url=SecretStr(committed_database_url) if committed_database_url else None,
    )
    database = Database.from_settings(settings)
    try:
        upgrade_to_head(database.engine)
        blob_id = _chunked_blob(database, written_days_ago=(9, 9))
        migrate(database.engine, "b7c41e0d9a52", downgrade=True)
        columns = {column["name"] for column in inspect(database.engine).get_columns("blob_chunks")}
        assert columns == {"blob_id", "position", "data"}
        upgrade_to_head(database.engine)
        indexes = {index["name"] for index in inspect(database.engine).get_indexes("blob_chunks")}
        assert "ix_blob_chunks_blob_id_written_on" in indexes
        with database.transaction() as session:
            chunks = session.execute(
                select(BlobChunk.position, BlobChunk.written_on).where(BlobChunk.blob_id == blob_id)
            ).all()
        # Chunks from before the column look young (written on the upgrade's day): the sweep
        # waits for them rather than guessing. The database's day may be a local one.
        assert sorted(position for position, _ in chunks) == [0, 1]
        today = dt.datetime.now(dt.UTC).date()
        assert all(abs(written_on - today) <= dt.timedelta(days=1) for _, written_on in chunks)
    finally:
        database.engine.dispose()
