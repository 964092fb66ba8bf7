"""A case's status on both databases: it moves forward one step at a time, and closes only with a
resolution note, sealed at rest."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cases.models import Case
from tests.cases.conftest import create_case

RESOLUTION = "Referred to the Garda; the family is safe."


@dataclass(frozen=True)
class CaseUnderWay:
    client: TestClient
    case_id: object

    def move(self, status: str, note: str | None = None) -> int:
        body = {"status": status, **({"resolution_note": note} if note else {})}
        return self.client.post(f"/api/v1/cases/{self.case_id}/status", json=body).status_code

    def detail(self) -> dict[str, object]:
        body: dict[str, object] = self.client.get(f"/api/v1/cases/{self.case_id}").json()
        return body


@pytest.fixture
def case(caseworker: TestClient, verified_tip: Callable[[], uuid.UUID]) -> CaseUnderWay:
    """A new (open) case of the caseworker's."""
    return CaseUnderWay(caseworker, create_case(caseworker, [verified_tip()])["id"])


@pytest.fixture
def closed(case: CaseUnderWay) -> CaseUnderWay:
    """The case taken through every step to closed, with a resolution note."""
    assert case.move("investigating") == 204
    assert case.move("referred") == 204
    assert case.move("closed", RESOLUTION) == 204
    return case


def test_an_open_case_cannot_skip_to_referred(case: CaseUnderWay) -> None:
    assert case.move("referred") == 409


def test_a_case_moves_forward_one_step_at_a_time(case: CaseUnderWay) -> None:
    assert case.move("investigating") == 204
    assert case.move("referred") == 204


def test_a_case_under_investigation_cannot_go_back_to_open(case: CaseUnderWay) -> None:
    assert case.move("investigating") == 204
    assert case.move("open") == 409


def test_a_case_cannot_close_without_a_resolution_note(case: CaseUnderWay) -> None:
    assert case.move("investigating") == 204
    assert case.move("referred") == 204
    assert case.move("closed") == 422


def test_a_closed_case_cannot_be_reopened(closed: CaseUnderWay) -> None:
    assert closed.move("investigating") == 409


def test_a_closed_case_shows_its_resolution_note(closed: CaseUnderWay) -> None:
    detail = closed.detail()
    assert (detail["status"], detail["resolution_note"]) == ("closed", RESOLUTION)


def test_the_resolution_note_is_sealed_at_rest(closed: CaseUnderWay, db_session: Session) -> None:
    stored = db_session.scalars(select(Case)).one()
    assert stored.resolution_encrypted  # stored, so the next check is not vacuous
    assert b"Garda" not in (stored.resolution_encrypted or b"")


def test_the_timeline_records_each_move_made_and_none_refused(case: CaseUnderWay) -> None:
    assert case.move("referred") == 409
    assert case.move("investigating") == 204
    assert case.move("open") == 409
    assert case.move("referred") == 204
    assert case.move("closed") == 422
    assert case.move("closed", RESOLUTION) == 204
    assert case.move("investigating") == 409
    assert [event["action"] for event in case.detail()["timeline"]] == [
        "create",
        "status",
        "status",
        "status",
    ]
