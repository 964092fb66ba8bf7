"""Alembic environment: runs on a connection handed in by app.schema, or on DAYLIGHT_DATABASE_URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import app.models  # noqa: F401 - registers every table on the metadata
from app.kit.config import Settings
from app.kit.db import Base, create_database_engine
from app.schema import sqlite_foreign_keys_off

target_metadata = Base.metadata


def run_on(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run_on(connection)
else:
    engine = create_database_engine(Settings().sqlalchemy_url)
    with engine.connect() as own_connection, sqlite_foreign_keys_off(own_connection), own_connection.begin():
        run_on(own_connection)
