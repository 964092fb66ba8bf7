"""A verified case linked to a station, recipients confirmed by two leads, and the forms that
refer the case: the staff UI's own pages, as the members use them."""

from __future__ import annotations

import io
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.models import Role
from app.crypto import sealing
from app.entrypoints.demo import SEED_FILE
from app.intake.models import Tip, TipStatus
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from app.referrals.keys import generate_recipient_key, parse_public_key, write_private_key
from app.stations import registry
from app.stations.models import Station
from tests.auth.factories import StaffMember, make_member
from tests.conftest import Client, Organisation
from tests.intake.factories import make_tip

# What the submitter wrote that identifies them: redacted before anything leaves.
IDENTIFYING = "Officer Wang Lei"
NARRATIVE = f"{IDENTIFYING} from the Dublin station phoned my mother in Urumqi twice in March."


def csrf(client: TestClient, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text)
    assert match, path
    return match.group(1)


@dataclass
class Recipient:
    id: uuid.UUID
    name: str
    fingerprint: str
    private_key: sealing.PrivateKey
    public_text: str


@dataclass
class ReferralCase:
    case_id: str
    link_id: str
    as_sent: uuid.UUID  # consent: authorities and partners, as written
    anonymised: uuid.UUID  # consent: partners only, without identifying details
    declined: uuid.UUID  # consent: no
    second_lead: StaffMember


def add_recipient(
    first_lead: TestClient, second_lead: TestClient, name: str, kind: str = "partner", *, confirm: bool = True
) -> Recipient:
    """A recipient as `daylight referral keygen` and two leads make it."""
    private_key, public_text = generate_recipient_key(name)
    added = first_lead.post(
        "/referrals/recipients",
        data={
            "csrf_token": csrf(first_lead, "/referrals/recipients"),
            "name": name,
            "contact": "+31 70 000 0000, desk officer",
            "kind": kind,
            "public_key": public_text,
        },
        follow_redirects=False,
    )
    assert added.status_code == 303, added.text
    fingerprint = parse_public_key(public_text).fingerprint
    page = first_lead.get("/referrals/recipients").text
    match = re.search(r'data-recipient="([0-9a-f-]{36})">\s*<td>' + re.escape(name), page)
    assert match, page
    recipient_id = uuid.UUID(match.group(1))
    if confirm:
        confirmed = second_lead.post(
            f"/referrals/recipients/{recipient_id}/confirm",
            data={"csrf_token": csrf(second_lead, "/referrals/recipients"), "fingerprint": fingerprint},
            follow_redirects=False,
        )
        assert confirmed.status_code == 303, confirmed.text
    return Recipient(recipient_id, name, fingerprint, private_key, public_text)


def referral_case(
    signed_in: Client,
    organisation: Organisation,
    intake_client: TestClient,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
    photo: bytes,
) -> ReferralCase:
    """Three verified reports (one with a photo) in a case linked to the Dublin station."""
    registry.apply(db_session, registry.parse(SEED_FILE.read_bytes(), "csv"), audit.SYSTEM)
    db_session.commit()
    before = set(db_session.scalars(select(Tip.id)))
    sent = intake_client.post(
        "/api/v1/tips",
        data={
            "narrative": NARRATIVE,
            "host_country": "IE",
            "host_city": "Dublin",
            "tactics": "family_pressure",
            "referral_consent": "authorities_and_partners",
            "referral_form": "as_sent",
        },
        files=[("files", ("photo.jpg", io.BytesIO(photo), "image/jpeg"))],
    )
    assert sent.status_code == 201, sent.text
    db_session.expire_all()
    [as_sent] = set(db_session.scalars(select(Tip.id))) - before
    anonymised, _ = make_tip(
        db_session,
        server_secrets,
        narrative=f"My cousin was told by {IDENTIFYING} to come back.",
        host_country="IE",
        host_city="Cork",
        referral_consent="partners_only",
    )
    declined, _ = make_tip(db_session, server_secrets, narrative="Keep this here.", referral_consent="none")
    for tip_id in (as_sent, anonymised, declined):
        db_session.get_one(Tip, tip_id).status = TipStatus.VERIFIED
    db_session.commit()
    caseworker, lead = signed_in(organisation[Role.CASEWORKER]), signed_in(organisation[Role.LEAD])
    created = caseworker.post(
        "/api/v1/cases",
        json={
            "title": "Calls from the Dublin station",
            "summary": "Families of three people pressured.",
            "tip_ids": [str(as_sent), str(anonymised), str(declined)],
            "tactics": ["family_pressure"],
            "host_country": "IE",
        },
    )
    assert created.status_code == 201, created.text
    case_id = created.json()["id"]
    dublin = db_session.scalars(select(Station).where(Station.city == "Dublin")).one()
    proposed = caseworker.post(
        f"/api/v1/cases/{case_id}/stations",
        json={
            "station_id": str(dublin.id),
            "relation": "contacted_via",
            "confidence": "high",
            "evidence": "The caller named the Dublin office; the number is in a published report.",
        },
    )
    assert proposed.status_code == 201, proposed.text
    link_id = proposed.json()["id"]
    assert lead.post(f"/api/v1/cases/{case_id}/stations/{link_id}/confirm").status_code == 204
    second_lead = make_member(db_session, settings, server_secrets, Role.LEAD, grant=organisation.intake)
    db_session.commit()
    return ReferralCase(case_id, link_id, as_sent, anonymised, declined, second_lead)


def propose_form(
    client: TestClient,
    case_id: str,
    recipients: list[Recipient],
    reports: dict[uuid.UUID, dict[str, list[str]]],
    *,
    station_links: tuple[str, ...] = (),
    redactions: str = IDENTIFYING,
    cover_note: str = "Please call us before acting on this.",
) -> Response:
    """The builder form posted; ``reports`` maps each ticked report to its sub-fields
    (``field``, ``file``, ``redacted``)."""
    data: list[tuple[str, str]] = [
        ("csrf_token", csrf(client, f"/cases/{case_id}/referrals/new")),
        ("redactions", redactions),
        ("cover_note", cover_note),
        ("case_summary", "yes"),
    ]
    data += [("recipient", str(recipient.id)) for recipient in recipients]
    data += [("station_link", link) for link in station_links]
    for tip_id, parts in reports.items():
        data.append(("report", str(tip_id)))
        for name, values in parts.items():
            data += [(f"{tip_id}.{name}", value) for value in values]
    form: dict[str, list[str]] = {}
    for name, value in data:
        form.setdefault(name, []).append(value)
    return client.post(f"/cases/{case_id}/referrals", data=form, follow_redirects=False)


def write_private_key_file(directory: Path, recipient: Recipient) -> Path:
    path = directory / f"{recipient.name.replace(' ', '-')}.key"
    write_private_key(path, recipient.private_key)
    return path
