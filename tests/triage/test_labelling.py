"""Labels on reports and cases, on both databases: put on and taken off by API and by form, a
retired label kept but not offered, and nothing of a restricted case shown to a non-member."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log.models import AuditEvent
from app.auth.models import Role
from app.intake.models import Tip, TipStatus
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from app.labels.models import TipLabel
from app.triage import labelling
from tests.auth.factories import StaffMember, make_member
from tests.cases.conftest import create_case
from tests.conftest import Client, Organisation
from tests.intake.factories import make_tip
from tests.labels.factories import create_label, principal_of


@pytest.fixture
def lead(signed_in: Client, organisation: Organisation) -> TestClient:
    return signed_in(organisation[Role.LEAD])


@pytest.fixture
def caseworker(signed_in: Client, organisation: Organisation) -> TestClient:
    return signed_in(organisation[Role.CASEWORKER])


@pytest.fixture
def tip_id(db_session: Session, server_secrets: ServerSecrets) -> uuid.UUID:
    made, _ = make_tip(db_session, server_secrets)
    db_session.commit()
    return made


def verified_tip(db_session: Session, server_secrets: ServerSecrets) -> uuid.UUID:
    made, _ = make_tip(db_session, server_secrets)
    db_session.get_one(Tip, made).status = TipStatus.VERIFIED
    db_session.commit()
    return made


def csrf(client: TestClient, page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(page).text)
    assert match
    return match.group(1)


def counted(client: TestClient) -> dict[str, tuple[int, int]]:
    return {
        label["name"]: (label["reports"], label["cases"]) for label in client.get("/api/v1/labels").json()
    }


def events(db_session: Session, action: str) -> int:
    return (
        db_session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action))
        or 0
    )


# --- Reports ---


def test_a_caseworker_labels_a_report_and_takes_the_label_off(
    lead: TestClient, caseworker: TestClient, tip_id: uuid.UUID, db_session: Session
) -> None:
    label_id = create_label(lead, "Dublin station")
    assert (
        caseworker.post(f"/api/v1/tips/{tip_id}/labels", json={"label_id": str(label_id)}).status_code == 204
    )
    assert counted(caseworker) == {"Dublin station": (1, 0)}
    assert "Dublin station" in caseworker.get(f"/tips/{tip_id}").text
    assert caseworker.delete(f"/api/v1/tips/{tip_id}/labels/{label_id}").status_code == 204
    assert counted(caseworker) == {"Dublin station": (0, 0)}
    assert (events(db_session, "tip.label"), events(db_session, "tip.unlabel")) == (1, 1)
    event = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "tip.label")).one()
    assert (event.object_type, event.object_id) == ("tip", str(tip_id))
    assert str(label_id) in event.details


def test_labelling_a_report_twice_changes_nothing(
    lead: TestClient, caseworker: TestClient, tip_id: uuid.UUID, db_session: Session
) -> None:
    label_id = create_label(lead, "Dublin station")
    for _ in range(2):
        assert (
            caseworker.post(f"/api/v1/tips/{tip_id}/labels", json={"label_id": str(label_id)}).status_code
            == 204
        )
    assert db_session.scalar(select(func.count()).select_from(TipLabel)) == 1
    assert events(db_session, "tip.label") == 1


def test_an_unknown_label_or_report_is_not_found(
    lead: TestClient, caseworker: TestClient, tip_id: uuid.UUID
) -> None:
    label_id = create_label(lead, "Dublin station")
    assert (
        caseworker.post(f"/api/v1/tips/{tip_id}/labels", json={"label_id": str(uuid.uuid4())}).status_code
        == 404
    )
    assert (
        caseworker.post(f"/api/v1/tips/{uuid.uuid4()}/labels", json={"label_id": str(label_id)}).status_code
        == 404
    )


def test_a_retired_label_stays_on_its_reports_but_is_not_added_any_more(
    lead: TestClient,
    caseworker: TestClient,
    tip_id: uuid.UUID,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    label_id = create_label(lead, "Dublin station")
    assert (
        caseworker.post(f"/api/v1/tips/{tip_id}/labels", json={"label_id": str(label_id)}).status_code == 204
    )
    assert lead.post(f"/api/v1/labels/{label_id}/retire").status_code == 204
    other_tip, _ = make_tip(db_session, server_secrets)
    db_session.commit()

    refused = caseworker.post(f"/api/v1/tips/{other_tip}/labels", json={"label_id": str(label_id)})
    assert (refused.status_code, refused.json()["error"]) == (409, "label_retired")
    # Still shown where it was, marked retired, and not offered on another report.
    page = caseworker.get(f"/tips/{tip_id}").text
    assert "Dublin station (retired)" in page
    assert f'<option value="{label_id}"' not in caseworker.get(f"/tips/{other_tip}").text
    # It can still be taken off.
    assert caseworker.delete(f"/api/v1/tips/{tip_id}/labels/{label_id}").status_code == 204


def test_the_tip_page_labels_by_form(lead: TestClient, caseworker: TestClient, tip_id: uuid.UUID) -> None:
    label_id = create_label(lead, "Dublin station")
    page = caseworker.get(f"/tips/{tip_id}").text
    assert f'<option value="{label_id}">Dublin station</option>' in page
    token = csrf(caseworker, f"/tips/{tip_id}")
    added = caseworker.post(
        f"/tips/{tip_id}/labels",
        data={"csrf_token": token, "label_id": str(label_id)},
        follow_redirects=False,
    )
    assert (added.status_code, added.headers["location"]) == (303, f"/tips/{tip_id}")
    page = caseworker.get(f"/tips/{tip_id}").text
    assert f'data-label="{label_id}"' in page
    assert f'<option value="{label_id}"' not in page
    removed = caseworker.post(
        f"/tips/{tip_id}/labels",
        data={"csrf_token": token, "label_id": str(label_id), "remove": "yes"},
        follow_redirects=False,
    )
    assert removed.status_code == 303
    assert f'data-label="{label_id}"' not in caseworker.get(f"/tips/{tip_id}").text


def test_a_refused_label_form_shows_the_tip_page_with_the_reason(
    lead: TestClient, caseworker: TestClient, tip_id: uuid.UUID
) -> None:
    label_id = create_label(lead, "Dublin station")
    token = csrf(caseworker, f"/tips/{tip_id}")
    assert lead.post(f"/api/v1/labels/{label_id}/retire").status_code == 204
    refused = caseworker.post(f"/tips/{tip_id}/labels", data={"csrf_token": token, "label_id": str(label_id)})
    assert refused.status_code == 409
    assert "This label is retired" in refused.text
    assert "Report " in refused.text
    unreadable = caseworker.post(f"/tips/{tip_id}/labels", data={"csrf_token": token, "label_id": "dublin"})
    assert unreadable.status_code == 422
    assert "The label is not valid." in unreadable.text
    forged = caseworker.post(
        f"/tips/{tip_id}/labels", data={"csrf_token": "forged", "label_id": str(label_id)}
    )
    assert forged.status_code == 403
    missing = caseworker.post(
        f"/tips/{uuid.uuid4()}/labels", data={"csrf_token": token, "label_id": str(label_id)}
    )
    assert missing.status_code == 404


# --- Cases ---


def test_a_case_is_labelled_by_api_and_by_form(
    lead: TestClient, caseworker: TestClient, db_session: Session, server_secrets: ServerSecrets
) -> None:
    label_id = create_label(lead, "Dublin station")
    case_id = create_case(caseworker, [verified_tip(db_session, server_secrets)])["id"]
    assert (
        caseworker.post(f"/api/v1/cases/{case_id}/labels", json={"label_id": str(label_id)}).status_code
        == 204
    )
    assert counted(caseworker) == {"Dublin station": (0, 1)}
    page = caseworker.get(f"/cases/{case_id}").text
    assert f'data-label="{label_id}"' in page
    assert caseworker.delete(f"/api/v1/cases/{case_id}/labels/{label_id}").status_code == 204
    assert (events(db_session, "case.label"), events(db_session, "case.unlabel")) == (1, 1)

    token = csrf(caseworker, f"/cases/{case_id}")
    assert f'<option value="{label_id}">Dublin station</option>' in caseworker.get(f"/cases/{case_id}").text
    added = caseworker.post(
        f"/cases/{case_id}/labels",
        data={"csrf_token": token, "label_id": str(label_id)},
        follow_redirects=False,
    )
    assert (added.status_code, added.headers["location"]) == (303, f"/cases/{case_id}")
    assert counted(caseworker) == {"Dublin station": (0, 1)}
    assert lead.post(f"/api/v1/labels/{label_id}/retire").status_code == 204
    assert "Dublin station (retired)" in caseworker.get(f"/cases/{case_id}").text
    refused = caseworker.post(f"/api/v1/cases/{case_id}/labels", json={"label_id": str(label_id)})
    assert refused.status_code == 409


# --- Restricted cases: nothing shown to a non-member ---


@dataclass(frozen=True)
class Restricted:
    case_id: str
    secret_tip: uuid.UUID
    label_id: uuid.UUID


@pytest.fixture
def outsider(
    db_session: Session, settings: Settings, server_secrets: ServerSecrets, organisation: Organisation
) -> StaffMember:
    """A caseworker holding the key, member of nothing."""
    member = make_member(db_session, settings, server_secrets, Role.CASEWORKER, grant=organisation.intake)
    db_session.commit()
    return member


@pytest.fixture
def restricted(lead: TestClient, db_session: Session, server_secrets: ServerSecrets) -> Restricted:
    """The lead's restricted case of one report, both carrying the label "Secret source"."""
    label_id = create_label(lead, "Secret source")
    secret_tip = verified_tip(db_session, server_secrets)
    case_id = str(create_case(lead, [secret_tip], restricted=True)["id"])
    assert lead.post(f"/api/v1/tips/{secret_tip}/labels", json={"label_id": str(label_id)}).status_code == 204
    assert lead.post(f"/api/v1/cases/{case_id}/labels", json={"label_id": str(label_id)}).status_code == 204
    return Restricted(case_id=case_id, secret_tip=secret_tip, label_id=label_id)


def test_a_non_member_counts_no_report_or_case_of_a_restricted_case(
    lead: TestClient, signed_in: Client, outsider: StaffMember, restricted: Restricted
) -> None:
    assert counted(lead) == {"Secret source": (1, 1)}
    assert counted(signed_in(outsider)) == {"Secret source": (0, 0)}
    page = signed_in(outsider).get("/labels").text
    assert re.search(r"Secret source</a></td>\s*<td>0</td>\s*<td>0</td>", page), page


def test_a_non_member_reads_no_label_of_a_restricted_cases_report(
    db_session: Session, organisation: Organisation, outsider: StaffMember, restricted: Restricted
) -> None:
    member = principal_of(organisation[Role.LEAD], organisation.intake)
    non_member = principal_of(outsider, organisation.intake)
    [view] = labelling.labels_by_tip(db_session, member, [restricted.secret_tip])[restricted.secret_tip]
    assert view.name == "Secret source"
    assert labelling.labels_by_tip(db_session, non_member, [restricted.secret_tip]) == {}
    case_id = uuid.UUID(restricted.case_id)
    assert [view.name for view in labelling.labels_by_case(db_session, member, [case_id])[case_id]] == [
        "Secret source"
    ]
    assert labelling.labels_by_case(db_session, non_member, [case_id]) == {}
    assert labelling.label_counts(db_session, non_member) == {}
    assert labelling.label_counts(db_session, member) == {restricted.label_id: 1}


def test_a_non_member_cannot_label_a_restricted_case_or_its_report(
    signed_in: Client, outsider: StaffMember, restricted: Restricted, db_session: Session
) -> None:
    other = signed_in(outsider)
    body = {"label_id": str(restricted.label_id)}
    assert other.post(f"/api/v1/tips/{restricted.secret_tip}/labels", json=body).status_code == 404
    assert (
        other.delete(f"/api/v1/tips/{restricted.secret_tip}/labels/{restricted.label_id}").status_code == 404
    )
    assert other.post(f"/api/v1/cases/{restricted.case_id}/labels", json=body).status_code == 404
    assert other.delete(f"/api/v1/cases/{restricted.case_id}/labels/{restricted.label_id}").status_code == 404
    assert db_session.scalar(select(func.count()).select_from(TipLabel)) == 1


def test_a_member_added_to_the_case_counts_its_labels(
    lead: TestClient, signed_in: Client, outsider: StaffMember, restricted: Restricted
) -> None:
    added = lead.post(
        f"/api/v1/cases/{restricted.case_id}/members", json={"account_id": str(outsider.account.id)}
    )
    assert added.status_code == 204
    assert counted(signed_in(outsider)) == {"Secret source": (1, 1)}


# --- For the queue and search ---


def test_tip_ids_with_label_narrows_a_scoped_query(
    lead: TestClient,
    db_session: Session,
    organisation: Organisation,
    tip_id: uuid.UUID,
    server_secrets: ServerSecrets,
) -> None:
    label_id = create_label(lead, "Dublin station")
    unlabelled, _ = make_tip(db_session, server_secrets)
    db_session.commit()
    assert lead.post(f"/api/v1/tips/{tip_id}/labels", json={"label_id": str(label_id)}).status_code == 204
    lead_principal = principal_of(organisation[Role.LEAD], organisation.intake)
    found = db_session.scalars(
        select(Tip.id).where(Tip.id.in_(labelling.tip_ids_with_label(label_id, lead_principal)))
    )
    assert list(found) == [tip_id]
    # A member who holds no key cannot filter by a label they cannot read, even knowing its id.
    keyless = principal_of(organisation[Role.CASEWORKER], None)
    assert (
        list(
            db_session.scalars(
                select(Tip.id).where(Tip.id.in_(labelling.tip_ids_with_label(label_id, keyless)))
            )
        )
        == []
    )
    assert unlabelled != tip_id


# --- The labels page ---


def test_a_lead_creates_and_retires_labels_on_the_labels_page(lead: TestClient) -> None:
    page = lead.get("/labels")
    assert page.status_code == 200
    assert 'action="/labels"' in page.text
    token = csrf(lead, "/labels")
    created = lead.post(
        "/labels", data={"csrf_token": token, "name": "Dublin station"}, follow_redirects=False
    )
    assert (created.status_code, created.headers["location"]) == (303, "/labels")
    duplicate = lead.post("/labels", data={"csrf_token": token, "name": "dublin station"})
    assert duplicate.status_code == 409
    assert "A label with this name already exists." in duplicate.text
    assert 'value="dublin station"' in duplicate.text
    [label] = lead.get("/api/v1/labels").json()
    retired = lead.post(f"/labels/{label['id']}/retire", data={"csrf_token": token}, follow_redirects=False)
    assert retired.status_code == 303
    page = lead.get("/labels")
    assert "data-retired" in page.text
    assert f'action="/labels/{label["id"]}/retire"' not in page.text
    again = lead.post(f"/labels/{label['id']}/retire", data={"csrf_token": token})
    assert again.status_code == 409
    assert "already retired" in again.text


def test_a_caseworker_sees_labels_but_no_form_to_create_or_retire(
    lead: TestClient, caseworker: TestClient
) -> None:
    create_label(lead, "Dublin station")
    page = caseworker.get("/labels").text
    assert "Dublin station" in page
    assert 'action="/labels"' not in page
    assert "/retire" not in page
    assert 'data-nav="labels"' in page
    token = csrf(caseworker, "/labels")
    assert caseworker.post("/labels", data={"csrf_token": token, "name": "Mine"}).status_code == 403
