"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL comes from DAYLIGHT_TEST_POSTGRES_URL (default: the local server's
database "test"); each run works in a schema of its own, dropped at the end.
If PostgreSQL is unreachable the run fails loudly. Only DAYLIGHT_SKIP_POSTGRES=1,
set by hand (never in CI), leaves the PostgreSQL half out.

Each test runs inside a transaction that is rolled back: services and the
apps under test join it through savepoints (join_transaction_mode).
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

from app.auth.models import Role
from app.auth.permissions import KEY_HOLDING_ROLES
from app.entrypoints.apps import create_intake_app, create_staff_app
from app.kit.config import Argon2Cost, Environment, Settings
from app.kit.db import Database, create_database_engine
from app.kit.server_secrets import ServerSecrets, create_server_secrets
from app.schema import upgrade_to_head
from tests.auth.factories import StaffMember, login, make_member
from tests.custody.factories import IntakeKeyFixture, make_intake_key

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SKIP_POSTGRES = os.environ.get("DAYLIGHT_SKIP_POSTGRES") == "1"
# The one place tests choose Argon2id cost: cheap, so that logins are fast. Far below the
# floor, which production settings refuse unless told that the cost is a test suite's.
CHEAP_ARGON2 = Argon2Cost(time_cost=1, memory_cost_kib=8, parallelism=1, allow_below_floor_for_tests=True)


def postgres_admin_url() -> str:
    return os.environ.get("DAYLIGHT_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)


def backends() -> list[str]:
    return ["sqlite"] if SKIP_POSTGRES else ["sqlite", "postgresql"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        # A test of something SQLite cannot do (two writers at once) is not run there at all,
        # rather than run and skipped: a skip in CI would hide a test that never runs.
        names = (
            [name for name in backends() if name == "postgresql"]
            if metafunc.definition.get_closest_marker("postgresql_only")
            else backends()
        )
        metafunc.parametrize("backend", names, indirect=True, scope="session")


@dataclass(frozen=True)
class Backend:
    name: str
    url: str
    engine: Engine


def create_postgres_schema(prefix: str) -> tuple[str, str]:
    """A fresh schema on the test server; returns (schema, url whose search_path is it)."""
    admin = create_database_engine(postgres_admin_url())
    schema = f"{prefix}_{secrets.token_hex(4)}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:
        pytest.fail(
            f"PostgreSQL at {postgres_admin_url()} is unreachable ({type(exc).__name__}). "
            "Start it, or set DAYLIGHT_SKIP_POSTGRES=1 by hand to run the SQLite half only.",
            pytrace=False,
        )
    finally:
        admin.dispose()
    separator = "&" if "?" in postgres_admin_url() else "?"
    return schema, f"{postgres_admin_url()}{separator}options=-csearch_path%3D{schema}"


def drop_postgres_schema(schema: str) -> None:
    admin = create_database_engine(postgres_admin_url())
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    name: str = request.param
    schema = None
    if name == "sqlite":
        url = f"sqlite+pysqlite:///{tmp_path_factory.mktemp('sqlite') / 'daylight.sqlite3'}"
    else:
        schema, url = create_postgres_schema("daylight_test")
    engine = create_database_engine(url)
    upgrade_to_head(engine)
    yield Backend(name=name, url=url, engine=engine)
    engine.dispose()
    if schema is not None:
        drop_postgres_schema(schema)


@pytest.fixture
def db_connection(backend: Backend) -> Iterator[Connection]:
    with backend.engine.connect() as connection:
        transaction = connection.begin()
        try:
            yield connection
        finally:
            transaction.rollback()


def _joined_session(connection: Connection) -> Session:
    return Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)


@pytest.fixture
def db_session(db_connection: Connection) -> Iterator[Session]:
    session = _joined_session(db_connection)
    yield session
    session.close()


@pytest.fixture
def database(backend: Backend, db_connection: Connection) -> Database:
    """A Database for the apps under test, whose every transaction is a savepoint of the test's."""
    return Database(engine=backend.engine, session_factory=lambda: _joined_session(db_connection))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir(mode=0o700)
    return path


@pytest.fixture
def server_secrets(data_dir: Path) -> ServerSecrets:
    return create_server_secrets(data_dir / "secrets")


@pytest.fixture
def settings(data_dir: Path, server_secrets: ServerSecrets) -> Settings:
    # The test client's origin: passkeys are bound to it (app.auth.passkeys).
    return Settings(
        data_dir=data_dir,
        argon2=CHEAP_ARGON2,
        environment=Environment.PRODUCTION,
        staff_origin="https://testserver",
    )


@dataclass(frozen=True)
class Organisation:
    """An intake key and one member per role; the caseworker and the lead hold the key."""

    intake: IntakeKeyFixture
    members: dict[Role, StaffMember]

    def __getitem__(self, role: Role) -> StaffMember:
        return self.members[role]


@pytest.fixture
def organisation(db_session: Session, settings: Settings, server_secrets: ServerSecrets) -> Organisation:
    intake = make_intake_key(db_session, server_secrets)
    members = {
        role: make_member(
            db_session, settings, server_secrets, role, grant=intake if role in KEY_HOLDING_ROLES else None
        )
        for role in Role
    }
    db_session.commit()  # releases the savepoint; the outer test transaction still rolls back
    return Organisation(intake=intake, members=members)


@pytest.fixture
def intake_client(settings: Settings, database: Database) -> Iterator[TestClient]:
    with intake_client_with(settings, database) as client:
        yield client


@contextmanager
def intake_client_with(settings: Settings, database: Database) -> Iterator[TestClient]:
    """An intake test client on settings a test chose (``intake_client`` is on the defaults)."""
    with TestClient(
        create_intake_app(settings, database=database),
        base_url="https://testserver",
        raise_server_exceptions=False,
    ) as client:
        yield client


@pytest.fixture
def staff_client(settings: Settings, database: Database) -> Iterator[TestClient]:
    with TestClient(
        create_staff_app(settings, database=database),
        base_url="https://testserver",
        raise_server_exceptions=False,
    ) as client:
        yield client


@pytest.fixture(params=backends())
def committed_database_url(request: pytest.FixtureRequest, data_dir: Path) -> Iterator[str | None]:
    """For tests whose data must really reach the disk: None (SQLite in the data dir) or a
    PostgreSQL URL on a fresh schema, dropped afterwards."""
    if request.param == "sqlite":
        yield None
        return
    schema, url = create_postgres_schema("daylight_committed")
    try:
        yield url
    finally:
        drop_postgres_schema(schema)


Client = Callable[[StaffMember], TestClient]


@pytest.fixture
def signed_in(settings: Settings, database: Database) -> Iterator[Client]:
    """A signed-in staff client per member (each its own cookies), made on demand."""
    clients: dict[uuid.UUID, TestClient] = {}
    opened = []

    def client_for(member: StaffMember) -> TestClient:
        if member.account.id not in clients:
            client = TestClient(
                create_staff_app(settings, database=database),
                base_url="https://testserver",
                raise_server_exceptions=False,
            )
            opened.append(client.__enter__())
            assert login(client, member).status_code == 200
            clients[member.account.id] = client
        return clients[member.account.id]

    yield client_for
    for client in opened:
        client.__exit__(None, None, None)
