"""Attachment storage in the database (several app nodes) behaves as the data dir does."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from app.blobs import BlobChunk, DatabaseBlobStore
from app.config import Settings
from app.db import Database
from app.entrypoints.apps import create_intake_app
from app.keys.organisation import init_organisation
from tests.conftest import CHEAP_ARGON2


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
