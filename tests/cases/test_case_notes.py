"""Case notes on both databases: sealed at rest, read back by the case's members."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.cases.models import CaseNote
from tests.cases.conftest import create_case

NOTE = "CANARY-CASE-NOTE"


@pytest.fixture
def case_id(lead: TestClient, verified_tip: Callable[[], uuid.UUID]) -> object:
    """The lead's case, with one note."""
    case_id = create_case(lead, [verified_tip()])["id"]
    note = lead.post(f"/api/v1/cases/{case_id}/notes", json={"body": NOTE})
    assert note.status_code == 201
    return case_id


def test_a_case_note_is_sealed_at_rest(case_id: object, db_session: Session) -> None:
    assert b"CANARY" not in db_session.scalars(select(CaseNote)).one().body_encrypted


def test_a_member_reads_a_case_note_back(lead: TestClient, case_id: object) -> None:
    assert lead.get(f"/api/v1/cases/{case_id}").json()["notes"][0]["body"] == NOTE
