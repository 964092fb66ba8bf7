"""Restricted cases on both databases: a restricted case and its tips exist only for its members,
and only members lift or set the restriction."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from tests.auth.factories import StaffMember
from tests.cases.conftest import create_case


@dataclass(frozen=True)
class RestrictedCase:
    id: object
    secret_tip: uuid.UUID
    open_tip: uuid.UUID  # verified, in no case


@pytest.fixture
def restricted(lead: TestClient, verified_tip: Callable[[], uuid.UUID]) -> RestrictedCase:
    """The lead's restricted case of one tip, beside another verified tip in no case."""
    secret_tip, open_tip = verified_tip(), verified_tip()
    case = create_case(lead, [secret_tip], restricted=True)
    return RestrictedCase(id=case["id"], secret_tip=secret_tip, open_tip=open_tip)


def add_member(lead: TestClient, case: RestrictedCase, member: StaffMember) -> None:
    response = lead.post(f"/api/v1/cases/{case.id}/members", json={"account_id": str(member.account.id)})
    assert response.status_code == 204


# --- What a non-member sees of it: nothing ---


def test_a_restricted_case_does_not_exist_for_a_non_member(
    other: TestClient, restricted: RestrictedCase
) -> None:
    assert other.get(f"/api/v1/cases/{restricted.id}").status_code == 404
    assert other.get("/api/v1/cases").json() == []


def test_a_restricted_cases_tip_does_not_exist_for_a_non_member(
    other: TestClient, restricted: RestrictedCase
) -> None:
    assert other.get(f"/api/v1/tips/{restricted.secret_tip}").status_code == 404


def test_a_restricted_cases_tip_is_not_in_a_non_members_queue(
    other: TestClient, restricted: RestrictedCase
) -> None:
    queue_ids = {item["id"] for item in other.get("/api/v1/tips").json()["items"]}
    assert str(restricted.secret_tip) not in queue_ids
    assert str(restricted.open_tip) in queue_ids


def test_a_restricted_cases_tip_is_not_counted_in_a_non_members_queue(
    other: TestClient, restricted: RestrictedCase
) -> None:
    assert other.get("/api/v1/tips").json()["counts"]["verified"] == 1


def test_a_non_member_cannot_add_a_note_to_a_restricted_case(
    other: TestClient, restricted: RestrictedCase
) -> None:
    assert other.post(f"/api/v1/cases/{restricted.id}/notes", json={"body": "x"}).status_code == 404


def test_a_non_member_cannot_add_a_note_to_a_restricted_cases_tip(
    other: TestClient, restricted: RestrictedCase
) -> None:
    assert other.post(f"/api/v1/tips/{restricted.secret_tip}/notes", json={"body": "x"}).status_code == 404


# --- Membership opens and closes it ---


def test_a_member_added_to_a_restricted_case_sees_it_and_its_tips(
    lead: TestClient, other: TestClient, outsider: StaffMember, restricted: RestrictedCase
) -> None:
    add_member(lead, restricted, outsider)
    assert other.get(f"/api/v1/cases/{restricted.id}").status_code == 200
    assert other.get(f"/api/v1/tips/{restricted.secret_tip}").status_code == 200


def test_a_member_removed_from_a_restricted_case_no_longer_sees_it_or_its_tips(
    lead: TestClient, other: TestClient, outsider: StaffMember, restricted: RestrictedCase
) -> None:
    add_member(lead, restricted, outsider)
    assert lead.delete(f"/api/v1/cases/{restricted.id}/members/{outsider.account.id}").status_code == 204
    assert other.get(f"/api/v1/tips/{restricted.secret_tip}").status_code == 404
    assert other.get(f"/api/v1/cases/{restricted.id}").status_code == 404


# --- Lifting and setting the restriction ---


def test_lifting_the_restriction_shows_the_case_to_everyone_with_the_key(
    lead: TestClient, other: TestClient, restricted: RestrictedCase
) -> None:
    assert (
        lead.post(f"/api/v1/cases/{restricted.id}/restriction", json={"restricted": False}).status_code == 204
    )
    assert other.get(f"/api/v1/cases/{restricted.id}").status_code == 200


def test_a_non_member_cannot_put_back_a_lifted_restriction(
    lead: TestClient, other: TestClient, restricted: RestrictedCase
) -> None:
    assert (
        lead.post(f"/api/v1/cases/{restricted.id}/restriction", json={"restricted": False}).status_code == 204
    )
    assert (
        other.post(f"/api/v1/cases/{restricted.id}/restriction", json={"restricted": True}).status_code == 403
    )


def test_a_non_member_cannot_restrict_an_open_case_and_hide_it(
    caseworker: TestClient, other: TestClient, verified_tip: Callable[[], uuid.UUID]
) -> None:
    case_id = create_case(caseworker, [verified_tip()])["id"]
    assert other.post(f"/api/v1/cases/{case_id}/restriction", json={"restricted": True}).status_code == 403
    assert caseworker.get(f"/api/v1/cases/{case_id}").status_code == 200


# --- A restricted case's report linked into an open case ---


@dataclass(frozen=True)
class SharedReport:
    open_case_id: object
    hidden: uuid.UUID  # in the restricted case and in the open one
    shown: uuid.UUID  # in the open case only


@pytest.fixture
def shared(lead: TestClient, verified_tip: Callable[[], uuid.UUID]) -> SharedReport:
    """A report of a restricted case also added to an open case, beside a report of the open case's own."""
    hidden, shown = verified_tip(), verified_tip()
    create_case(lead, [hidden], restricted=True)
    open_case = create_case(lead, [shown])
    assert lead.post(f"/api/v1/cases/{open_case['id']}/tips", json={"tip_id": str(hidden)}).status_code == 204
    return SharedReport(open_case_id=open_case["id"], hidden=hidden, shown=shown)


def test_a_report_in_a_restricted_case_is_not_counted_for_outsiders(
    other: TestClient, shared: SharedReport
) -> None:
    [listed] = other.get("/api/v1/cases").json()
    assert listed["tip_count"] == 1


def test_a_report_in_a_restricted_case_is_not_listed_for_outsiders(
    other: TestClient, shared: SharedReport
) -> None:
    detail = other.get(f"/api/v1/cases/{shared.open_case_id}").json()
    assert [tip["id"] for tip in detail["tips"]] == [str(shared.shown)]


def test_a_report_in_a_restricted_case_is_not_named_in_the_timeline_for_outsiders(
    other: TestClient, shared: SharedReport
) -> None:
    detail = other.get(f"/api/v1/cases/{shared.open_case_id}").json()
    # The outsider does see that a report was added (the event the check below reads)...
    assert "tip_add" in [event["action"] for event in detail["timeline"]]
    # ...but not which one: no event carries a report's ref.
    assert all(event["detail"] is None or "T-" not in event["detail"] for event in detail["timeline"])


def test_a_member_of_the_restricted_case_sees_its_report_in_the_open_case(
    lead: TestClient, shared: SharedReport
) -> None:
    detail = lead.get(f"/api/v1/cases/{shared.open_case_id}").json()
    assert sorted(tip["id"] for tip in detail["tips"]) == sorted([str(shared.hidden), str(shared.shown)])
