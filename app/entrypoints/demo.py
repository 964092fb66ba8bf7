"""`daylight demo`: an organisation with one account per role and a few demo tips."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.credentials import create_account
from app.auth.models import Role
from app.auth.permissions import KEY_HOLDING_ROLES
from app.auth.second_factor import new_totp_secret
from app.entrypoints.demo_reports import generated_reports
from app.entrypoints.organisation import NewOrganisation, organisation_created
from app.intake import service as intake_service
from app.intake.models import MessageAuthor, Tip
from app.intake.schemas import TipSubmission
from app.keys.grants import grant_intake_key
from app.kit.clock import today
from app.kit.config import Environment, Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets, load_server_secrets
from app.kit.taxonomy import Tactic
from app.stations import registry
from app.stations.models import Station

CREDENTIALS_FILE = "demo-credentials.json"
SEED_FILE = Path(__file__).resolve().parents[1] / "stations" / "seed" / "stations-seed.csv"

DEMO_TIPS = (
    TipSubmission(
        narrative="(Demo) A man who said he worked for the 'service station' in our city phoned "
        "my father in Fuzhou and told him I should come home to 'sort out my papers'.",
        tactics=[Tactic.FAMILY_PRESSURE, Tactic.PERSUADE_TO_RETURN, Tactic.STATION_CONTACT],
        host_country="IE",
        host_city="Dublin",
        urgent=False,
    ),
    TipSubmission(
        narrative="(Demo) After I posted about the camps, I received messages saying my sister "
        "would lose her job unless I delete my account.",
        tactics=[Tactic.DIGITAL_THREATS, Tactic.FAMILY_PRESSURE],
        host_country="NL",
        host_city="Amsterdam",
        urgent=True,
    ),
    TipSubmission(
        narrative="(Demo) The consulate refused to renew my passport and said I must apply in person "
        "in China.",
        tactics=[Tactic.DOCUMENT_DENIAL],
        host_country="CA",
        host_city=None,
        urgent=False,
    ),
)
# `daylight demo --reports N`: the hand-written tips alone by default, at most this many in all.
MAX_DEMO_REPORTS = 5000
# Generated reports arrived over this many days up to today.
DEMO_REPORT_DAYS = 120


@dataclass(frozen=True, slots=True)
class DemoAccount:
    role: str
    username: str
    password: str
    totp_secret: str


def create_demo(
    settings: Settings, database: Database, *, reports: int = len(DEMO_TIPS)
) -> tuple[NewOrganisation, list[DemoAccount]]:
    """Made in init's transaction (app.entrypoints.organisation): a demo that fails part-way
    leaves nothing behind either. ``reports`` tips in all: DEMO_TIPS, then generated ones."""
    if not len(DEMO_TIPS) <= reports <= MAX_DEMO_REPORTS:
        raise ValueError(f"a demo holds {len(DEMO_TIPS)} to {MAX_DEMO_REPORTS} reports")
    with organisation_created(settings, database, environment=Environment.DEVELOPMENT) as (
        organisation,
        inside,
    ):
        accounts = _demo_content(settings, inside, organisation, reports)
    return organisation, accounts


def _demo_content(
    settings: Settings, database: Database, organisation: NewOrganisation, reports: int
) -> list[DemoAccount]:
    server_secrets = load_server_secrets(settings.secrets_dir)
    accounts: list[DemoAccount] = []
    with database.transaction() as session:
        for role in Role:
            demo = DemoAccount(
                role=role.value,
                username=f"demo-{role.value}",
                password=secrets.token_urlsafe(18),
                totp_secret=new_totp_secret(),
            )
            account, _ = create_account(
                session,
                username=demo.username,
                role=role,
                password=demo.password,
                totp_secret=demo.totp_secret,
                settings=settings,
                server_secrets=server_secrets,
            )
            if role in KEY_HOLDING_ROLES:
                grant_intake_key(
                    session,
                    intake_key=organisation.intake_key,
                    intake_private=organisation.intake_private,
                    grantee=account,
                    granted_by_id=None,
                    key_integrity_key=server_secrets.key_integrity_key,
                )
            accounts.append(demo)
        drafts = []
        for submission in DEMO_TIPS:
            drafts.append(intake_service.start_tip(session, server_secrets))
            intake_service.finish_tip(session, drafts[-1], submission)
        # The public seed of the station registry (app/stations/seed/).
        registry.apply(session, registry.parse(SEED_FILE.read_bytes(), "csv"), audit.SYSTEM)
        _generated_tips(session, server_secrets, reports - len(DEMO_TIPS))
        first_tip = session.get_one(Tip, drafts[0].id)
        intake_service.add_message(
            session,
            first_tip,
            "(Demo) Thank you. Which city did the caller say the station was in?",
            author=MessageAuthor.STAFF,
            server_secrets=server_secrets,
        )
    write_credentials(settings.data_dir / CREDENTIALS_FILE, accounts)
    return accounts


def _generated_tips(session: Session, server_secrets: ServerSecrets, count: int) -> None:
    """``count`` generated reports (app.entrypoints.demo_reports), received over the last
    DEMO_REPORT_DAYS days: a queue with a past, not one day's worth."""
    if count <= 0:
        return
    stations = {(station.country, station.city): station.id for station in session.scalars(select(Station))}
    day = today()
    arrivals = random.Random(count)  # noqa: S311 - demo data, reproducible on purpose
    for submission in generated_reports(count, stations=stations, on=day):
        draft = intake_service.start_tip(session, server_secrets)
        intake_service.finish_tip(session, draft, submission)
        tip = session.get_one(Tip, draft.id)
        # Tips are kept by the day only; the latest activity is never before arrival nor after today.
        tip.received_on = day - dt.timedelta(days=arrivals.randint(0, DEMO_REPORT_DAYS))
        quiet = arrivals.random() < 0.7
        since = (day - tip.received_on).days
        tip.last_activity_on = tip.received_on + dt.timedelta(days=0 if quiet else arrivals.randint(0, since))
    session.flush()


def write_credentials(path: Path, accounts: list[DemoAccount]) -> None:
    document = {
        "users": [
            {"role": a.role, "username": a.username, "password": a.password, "totp_secret": a.totp_secret}
            for a in accounts
        ]
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")


def read_credentials(data_dir: Path) -> list[DemoAccount]:
    document = json.loads((data_dir / CREDENTIALS_FILE).read_text())
    return [DemoAccount(**user) for user in document["users"]]
