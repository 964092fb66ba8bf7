from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import Role
from app.entrypoints.demo import SEED_FILE
from app.intake.models import Tip, TipStatus
from app.kit.server_secrets import ServerSecrets
from app.stations import registry
from app.stations.models import Station
from tests.conftest import Client, Organisation
from tests.intake.factories import make_tip


def seeded_case(
    signed_in: Client,
    organisation: Organisation,
    db_session: Session,
    server_secrets: ServerSecrets,
    *,
    restricted: bool = False,
) -> tuple[str, Station]:
    """The seed registry imported and a case opened from a verified tip (tactics station_contact and
    family_pressure, host country IE); returns the case id and the Dublin station."""
    registry.apply(db_session, registry.parse(SEED_FILE.read_bytes(), "csv"), audit.SYSTEM)
    tip_id, _ = make_tip(db_session, server_secrets)
    db_session.get_one(Tip, tip_id).status = TipStatus.VERIFIED
    db_session.commit()
    dublin = db_session.scalars(select(Station).where(Station.city == "Dublin")).one()
    caseworker = signed_in(organisation[Role.CASEWORKER])
    created = caseworker.post(
        "/api/v1/cases",
        json={
            "title": "Calls from Dublin",
            "tip_ids": [str(tip_id)],
            "tactics": ["station_contact", "family_pressure"],
            "host_country": "IE",
            "restricted": restricted,
        },
    )
    assert created.status_code == 201
    return created.json()["id"], dublin
