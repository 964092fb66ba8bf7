"""Creating an organisation: data dir, server secrets, schema, intake key."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import inspect

from app.crypto import sealing
from app.custody.models import IntakeKey
from app.custody.service import create_intake_key, current_intake_key
from app.entrypoints.integrity_backfill import backfill_row_macs
from app.kit.config import DATA_DIR_ENV_FILE, Environment, Settings
from app.kit.db import Database
from app.kit.server_secrets import create_server_secrets
from app.schema import upgrade_to_head


class OrganisationExists(Exception):
    """An organisation is already set up here; init never overwrites one."""


@dataclass(frozen=True, slots=True, repr=False)
class NewOrganisation:
    intake_key: IntakeKey
    intake_private: sealing.PrivateKey
    recovery_key: str


def _database_has_organisation(database: Database) -> bool:
    if "intake_keys" not in inspect(database.engine).get_table_names():
        return False
    with database.transaction() as session:
        return current_intake_key(session) is not None


def init_organisation(
    settings: Settings, database: Database, *, environment: Environment = Environment.PRODUCTION
) -> NewOrganisation:
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if settings.secrets_dir.exists() or _database_has_organisation(database):
        raise OrganisationExists(str(settings.data_dir))
    env_file = settings.data_dir / DATA_DIR_ENV_FILE
    env_file.write_text(
        f"# Written by daylight init; environment variables override it.\n"
        f"DAYLIGHT_ENVIRONMENT={environment.value}\n"
    )
    server_secrets = create_server_secrets(settings.secrets_dir)
    upgrade_to_head(database.engine)
    with database.transaction() as session:
        intake_key, intake_private, recovery_key = create_intake_key(
            session, key_integrity_key=server_secrets.key_integrity_key
        )
    # A new organisation has no message from before row MACs: close that door at once.
    backfill_row_macs(database, server_secrets.key_integrity_key)
    return NewOrganisation(intake_key=intake_key, intake_private=intake_private, recovery_key=recovery_key)
