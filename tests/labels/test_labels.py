"""The label vocabulary on both databases: leads create and retire labels, key holders read their
names, and a database copy shows no name."""

from __future__ import annotations

import secrets
import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import LargeBinary, select
from sqlalchemy.orm import Session

import app.models  # noqa: F401 - every table on the metadata, for the database copy
from app.audit_log.models import AuditEvent
from app.auth.models import Role
from app.kit.config import Settings
from app.kit.db import Base
from app.kit.errors import Forbidden
from app.kit.server_secrets import ServerSecrets
from app.labels import service
from app.labels.models import Label
from tests.auth.factories import make_member
from tests.conftest import Client, Organisation
from tests.labels.factories import create_label, principal_of


@pytest.fixture
def lead(signed_in: Client, organisation: Organisation) -> TestClient:
    return signed_in(organisation[Role.LEAD])


@pytest.fixture
def caseworker(signed_in: Client, organisation: Organisation) -> TestClient:
    return signed_in(organisation[Role.CASEWORKER])


def names(client: TestClient) -> list[str]:
    response = client.get("/api/v1/labels")
    assert response.status_code == 200, response.text
    return [label["name"] for label in response.json()]


# --- Creating ---


def test_a_lead_creates_a_label_that_every_key_holder_reads(lead: TestClient, caseworker: TestClient) -> None:
    created = lead.post("/api/v1/labels", json={"name": "  Dublin station  "})
    assert created.status_code == 201
    assert created.json()["name"] == "Dublin station"
    assert names(caseworker) == ["Dublin station"]


def test_labels_are_listed_by_name_whatever_their_case(lead: TestClient) -> None:
    for name in ("family in Xinjiang", "Dublin station", "amsterdam"):
        create_label(lead, name)
    assert names(lead) == ["amsterdam", "Dublin station", "family in Xinjiang"]


def test_a_caseworker_cannot_create_a_label(caseworker: TestClient) -> None:
    assert caseworker.post("/api/v1/labels", json={"name": "Mine"}).status_code == 403
    assert names(caseworker) == []


def test_a_caseworker_cannot_retire_a_label(lead: TestClient, caseworker: TestClient) -> None:
    label_id = create_label(lead, "Dublin station")
    assert caseworker.post(f"/api/v1/labels/{label_id}/retire").status_code == 403
    assert lead.get("/api/v1/labels").json()[0]["retired"] is False


def test_an_active_name_is_not_created_twice_whatever_its_case(lead: TestClient) -> None:
    create_label(lead, "Dublin station")
    refused = lead.post("/api/v1/labels", json={"name": "DUBLIN STATION "})
    assert refused.status_code == 409
    assert refused.json() == {"error": "duplicate_label", "detail": "A label with this name already exists."}
    assert names(lead) == ["Dublin station"]


def test_a_retired_name_may_be_used_again(lead: TestClient) -> None:
    old = create_label(lead, "Dublin station")
    assert lead.post(f"/api/v1/labels/{old}/retire").status_code == 204
    assert lead.post("/api/v1/labels", json={"name": "Dublin station"}).status_code == 201
    assert sorted(label["retired"] for label in lead.get("/api/v1/labels").json()) == [False, True]


@pytest.mark.parametrize(
    "name",
    ["", "   ", "x" * 65, "Dublin\nstation", "Dublin\u202estation", "Dub\u200blin", "tab\there"],
)
def test_a_name_must_be_one_visible_line_of_at_most_64_characters(lead: TestClient, name: str) -> None:
    refused = lead.post("/api/v1/labels", json={"name": name})
    assert refused.status_code == 422, refused.text
    assert names(lead) == []


def test_a_name_of_64_characters_in_any_script_is_accepted(lead: TestClient) -> None:
    name = ("ئۇيغۇر 维吾尔" * 8)[:64]
    assert lead.post("/api/v1/labels", json={"name": name}).json()["name"] == name


def test_creating_and_retiring_are_audited_without_the_name(lead: TestClient, db_session: Session) -> None:
    name = f"CANARY-{secrets.token_hex(4)}"
    label_id = create_label(lead, name)
    assert lead.post(f"/api/v1/labels/{label_id}/retire").status_code == 204
    events = list(
        db_session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action.in_(["label.create", "label.retire"]))
            .order_by(AuditEvent.seq)
        )
    )
    assert [(event.action, event.object_type, event.object_id) for event in events] == [
        ("label.create", "label", str(label_id)),
        ("label.retire", "label", str(label_id)),
    ]
    assert all(name not in event.details for event in events)


# --- Retiring ---


def test_a_retired_label_is_still_listed_as_retired(lead: TestClient, caseworker: TestClient) -> None:
    label_id = create_label(lead, "Dublin station")
    assert lead.post(f"/api/v1/labels/{label_id}/retire").status_code == 204
    [label] = caseworker.get("/api/v1/labels").json()
    assert (label["name"], label["retired"]) == ("Dublin station", True)


def test_a_label_is_retired_once(lead: TestClient) -> None:
    label_id = create_label(lead, "Dublin station")
    assert lead.post(f"/api/v1/labels/{label_id}/retire").status_code == 204
    assert lead.post(f"/api/v1/labels/{label_id}/retire").status_code == 409


def test_retiring_an_unknown_label_is_not_found(lead: TestClient) -> None:
    assert lead.post(f"/api/v1/labels/{uuid.uuid4()}/retire").status_code == 404


# --- Who reads names ---


def test_a_member_without_the_intake_key_reads_no_name(
    lead: TestClient,
    signed_in: Client,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    create_label(lead, "Dublin station")
    keyless = make_member(db_session, settings, server_secrets, Role.CASEWORKER)
    db_session.commit()
    client = signed_in(keyless)
    assert names(client) == []
    page = client.get("/labels")
    assert page.status_code == 200
    assert "Dublin station" not in page.text
    assert "shown to members who hold the intake key" in page.text


@pytest.mark.parametrize("role", [Role.ADMIN, Role.AUDITOR])
def test_roles_without_the_queue_have_no_labels(
    signed_in: Client, organisation: Organisation, role: Role
) -> None:
    client = signed_in(organisation[role])
    assert client.get("/api/v1/labels").status_code == 403
    assert client.get("/labels").status_code == 403


def test_the_services_give_a_keyless_caller_nothing(
    db_session: Session, organisation: Organisation, server_secrets: ServerSecrets
) -> None:
    lead = principal_of(organisation[Role.LEAD], organisation.intake)
    label = service.create_label(db_session, lead, "Dublin station", server_secrets)
    keyless = principal_of(organisation[Role.CASEWORKER], None)
    assert service.label_views(db_session, keyless) == []
    assert [view.id for view in service.label_views(db_session, lead)] == [label.id]


def test_a_lead_without_the_current_intake_key_cannot_create_a_label(
    db_session: Session, organisation: Organisation, server_secrets: ServerSecrets
) -> None:
    keyless_lead = principal_of(organisation[Role.LEAD], None)
    with pytest.raises(Forbidden):
        service.create_label(db_session, keyless_lead, "Dublin station", server_secrets)


# --- At rest ---


def _row_bytes(session: Session, table_name: str) -> list[bytes]:
    """Every value of every row of a table, as a database copy holds it."""
    table = Base.metadata.tables[table_name]
    values = []
    for row in session.connection().execute(select(table)):
        for column, value in zip(table.columns, row, strict=True):
            if isinstance(column.type, LargeBinary) and value is not None:
                values.append(bytes(value))
            else:
                values.append(str(value).encode("utf-8"))
    return values


def _encodings(text: str) -> list[bytes]:
    return [
        form.encode(codec)
        for form in (text, text.casefold())
        for codec in ("utf-8", "utf-16-le", "utf-16-be")
    ]


def test_a_database_copy_shows_no_label_name(lead: TestClient, db_session: Session) -> None:
    name = f"Canary {secrets.token_hex(5)} family"
    label_id = create_label(lead, name)
    db_session.expire_all()
    stored = db_session.get_one(Label, label_id)
    assert stored.name_encrypted
    assert stored.sealed_data_key
    label_values = _row_bytes(db_session, "labels")
    assert label_values
    for value in label_values:
        for encoded in _encodings(name):
            assert encoded not in value
    # Nor anywhere else: not in the audit log, not in any other table.
    everything = b"\x00".join(
        value for table in Base.metadata.sorted_tables for value in _row_bytes(db_session, table.name)
    )
    for encoded in _encodings(name):
        assert encoded not in everything
