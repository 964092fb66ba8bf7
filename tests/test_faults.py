"""Faults answer in the protocol: 503 with Retry-After, 507, 4xx; never a 500, nothing half-stored."""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg.errors
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from app.entrypoints.apps import create_intake_app, create_staff_app
from app.entrypoints.organisation import init_organisation
from app.intake.models import Tip, TipAttachment, TipMessage
from app.kit import blobs
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.errors import InsufficientStorage, ServiceUnavailable, database_failure, storage_full
from tests.conftest import CHEAP_ARGON2, Organisation
from tests.intake.test_api import VALID, submit
from tests.intake.test_api import blobs as stored_blobs

UNREACHABLE_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:9/test"


def count(session: Session, model: type[Any]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def assert_busy(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    assert set(response.json()) == {"error", "detail"}


# --- The database does not answer ----------------------------------------------------------------


@pytest.fixture
def unreachable(settings: Settings) -> Settings:
    """The organisation's settings with a database nobody listens for (connection refused)."""
    return settings.model_copy(
        update={"database_url": SecretStr(UNREACHABLE_POSTGRES), "database_timeout_seconds": 1.0}
    )


def test_a_tip_to_an_unreachable_database_is_503_with_retry_after(unreachable: Settings) -> None:
    with TestClient(
        create_intake_app(unreachable, pool_size=2),
        base_url="https://testserver",
        raise_server_exceptions=False,
    ) as client:
        assert_busy(client.post("/api/v1/tips", json=VALID))
        assert_busy(client.post("/api/v1/followup", json={"receipt": "X" * 24}))
        assert_busy(client.post("/report", data={"narrative": "x", "step": "review"}))
        # Liveness still answers; readiness says the database does not.
        assert client.get("/healthz").status_code == 200
        assert_busy(client.get("/readyz"))


def test_staff_login_to_an_unreachable_database_is_503_with_retry_after(unreachable: Settings) -> None:
    with TestClient(
        create_staff_app(unreachable, pool_size=2),
        base_url="https://testserver",
        raise_server_exceptions=False,
    ) as client:
        assert_busy(client.post("/api/v1/auth/login", json={"username": "a", "password": "b", "otp": "1"}))
        assert client.get("/healthz").status_code == 200


def test_readiness_is_200_while_the_database_answers(
    intake_client: TestClient,
    organisation: Organisation,
) -> None:
    assert intake_client.get("/readyz").json() == {"status": "ready"}


# --- The disk is full ----------------------------------------------------------------------------


class FullDiskWriter:
    def write(self, data: bytes, /) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self) -> None:
        pass


def test_an_upload_onto_a_full_disk_is_507_and_stores_nothing(
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(blobs.BlobStore, "create", lambda self, blob_id: FullDiskWriter())
    response = intake_client.post(
        "/api/v1/tips",
        data={"narrative": "See the file."},
        files=[("files", ("a.txt", b"evidence" * 1000, "text/plain"))],
    )
    assert response.status_code == 507, response.text
    assert response.json()["error"] == "insufficient_storage"
    assert (count(db_session, Tip), count(db_session, TipAttachment)) == (0, 0)
    assert stored_blobs(settings) == []


@pytest.fixture
def full_disk_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "full", argon2=CHEAP_ARGON2)


@dataclass
class FullDatabase:
    database: Database
    full: bool = True

    def free_space(self) -> None:
        self.full = False
        self.database.engine.dispose()  # new connections come without the cap


@pytest.fixture
def full_sqlite(full_disk_settings: Settings) -> Iterator[FullDatabase]:
    """A real SQLite database that can grow no further (SQLITE_FULL), until space is freed."""
    database = Database.from_settings(full_disk_settings)
    init_organisation(full_disk_settings, database)
    fault = FullDatabase(database)

    @event.listens_for(database.engine, "connect")
    def cap_size(dbapi_connection: Any, _record: Any) -> None:
        if fault.full:
            pages = dbapi_connection.execute("PRAGMA page_count").fetchone()[0]
            dbapi_connection.execute(f"PRAGMA max_page_count={pages}")

    database.engine.dispose()  # reconnect with the cap
    yield fault
    database.engine.dispose()


def test_a_tip_into_a_full_sqlite_database_is_507_and_the_service_recovers(
    full_disk_settings: Settings, full_sqlite: FullDatabase
) -> None:
    database = full_sqlite.database
    with TestClient(
        create_intake_app(full_disk_settings, database=database),
        base_url="https://testserver",
        raise_server_exceptions=False,
    ) as client:
        statuses = [client.post("/api/v1/tips", json=VALID).status_code for _ in range(40)]
        accepted = statuses.count(201)
        # Tips are taken while pages are free; once the file is full, every one is 507.
        assert statuses == [201] * accepted + [507] * (40 - accepted), statuses
        assert accepted < 40
        full_sqlite.free_space()
        # Space again: the same process takes tips again, without a restart.
        assert client.post("/api/v1/tips", json=VALID).status_code == 201
    with database.transaction() as session:
        # Nothing half-stored: the acknowledged tips and the one after recovery, no more.
        assert count(session, Tip) == accepted + 1


def _db_error(original: BaseException) -> OperationalError:
    return OperationalError("INSERT INTO tips ...", {}, original)


def _sqlite_error(code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("simulated")
    error.sqlite_errorcode = code
    return error


@pytest.mark.parametrize(
    ("error", "meaning"),
    [
        (_db_error(_sqlite_error(13)), InsufficientStorage),  # SQLITE_FULL
        (_db_error(psycopg.errors.DiskFull()), InsufficientStorage),  # 53100
        (OSError(errno.ENOSPC, "full"), InsufficientStorage),
        (OSError(errno.EDQUOT, "quota"), InsufficientStorage),
        (_db_error(_sqlite_error(5)), ServiceUnavailable),  # SQLITE_BUSY past busy_timeout
        (_db_error(psycopg.errors.AdminShutdown()), ServiceUnavailable),
        (_db_error(psycopg.errors.TooManyConnections()), ServiceUnavailable),
        (_db_error(psycopg.OperationalError("connection refused")), ServiceUnavailable),
        (PoolTimeout("QueuePool limit reached"), ServiceUnavailable),
    ],
)
def test_availability_and_space_errors_are_told_apart_from_bugs(error: BaseException, meaning: type) -> None:
    if isinstance(error, OSError):
        assert storage_full(error)
        return
    assert isinstance(database_failure(error), meaning)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        _db_error(_sqlite_error(1)),  # SQLITE_ERROR: a bad statement is a bug
        _db_error(psycopg.errors.UndefinedColumn()),
    ],
)
def test_a_programming_error_stays_a_500(error: OperationalError) -> None:
    assert database_failure(error) is None


# --- Text that is not Unicode ---------------------------------------------------------------------

LONE_SURROGATE_JSON = '"\\ud800"'


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/api/v1/tips", '{"narrative": %s}'),
        ("/api/v1/tips", '{"narrative": "x", "host_city": %s}'),
        ("/api/v1/tips", '{"narrative": "x", "tactics": [%s]}'),
        ("/api/v1/followup", '{"receipt": %s}'),
        ("/api/v1/followup/messages", '{"receipt": "0000-0000-0000-0000-0000-0000", "body": %s}'),
        ("/api/v1/followup/messages", '{"receipt": %s, "body": "hello"}'),
    ],
)
def test_a_lone_surrogate_in_any_json_field_is_a_4xx(
    intake_client: TestClient, organisation: Organisation, db_session: Session, path: str, template: str
) -> None:
    response = intake_client.post(
        path, content=(template % LONE_SURROGATE_JSON).encode(), headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text
    assert (count(db_session, Tip), count(db_session, TipMessage)) == (0, 0)


def test_a_surrogate_pair_is_a_character_and_is_accepted(
    intake_client: TestClient, organisation: Organisation
) -> None:
    response = intake_client.post(
        "/api/v1/tips",
        content=b'{"narrative": "\\ud83d\\ude00 they came"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 201


def test_surrogates_encoded_as_bytes_in_forms_are_a_4xx_or_replaced(
    intake_client: TestClient, organisation: Organisation
) -> None:
    # UTF-8 has no encoding for a surrogate: ED A0 80 is invalid, in a multipart field or a form.
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="narrative"\r\n\r\n'.encode()
        + b"\xed\xa0\x80"
        + f"\r\n--{boundary}--\r\n".encode()
    )
    refused = intake_client.post(
        "/api/v1/tips", content=body, headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert 400 <= refused.status_code < 500
    for path in ("/report/step", "/followup"):
        form = intake_client.post(
            path,
            content=b"narrative=%ED%A0%80&receipt=%ED%A0%80&step=what&go=next",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code < 500


def test_receipts_still_open_after_these_faults(
    intake_client: TestClient, organisation: Organisation
) -> None:
    receipt = submit(intake_client)
    assert intake_client.post("/api/v1/followup", json={"receipt": receipt}).status_code == 200


def test_utf8_encoded_surrogate_bytes_in_json_are_a_4xx(
    intake_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    # No escape: the bytes of a surrogate encoded as if it were a character (ED A0 80).
    body = b'{"receipt": "0000-0000-0000-0000-0000-0000", "body": "\xed\xa0\x80"}'
    for path in ("/api/v1/followup/messages", "/api/v1/followup", "/api/v1/tips"):
        response = intake_client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, (path, response.text)
    assert (count(db_session, Tip), count(db_session, TipMessage)) == (0, 0)
