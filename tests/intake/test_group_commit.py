"""The tip committer: one commit for many tips, and one bad tip never fails the others."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.intake.group_commit import TipCommitter
from app.intake.models import Tip
from app.intake.schemas import TipSubmission
from app.kit.db import Database
from app.kit.errors import InvalidInput
from app.kit.server_secrets import ServerSecrets
from tests.conftest import Organisation

SUBMISSION = TipSubmission.model_validate({"narrative": "They phoned my mother.", "host_country": "IE"})


def committer_for(database: Database, server_secrets: ServerSecrets) -> TipCommitter:
    committer = TipCommitter(database, server_secrets)
    committer.read_current_key()
    return committer


def test_tips_submitted_together_are_all_stored_and_all_answered(
    database: Database, server_secrets: ServerSecrets, organisation: Organisation, db_session: Session
) -> None:
    committer = committer_for(database, server_secrets)
    futures = [committer.submit(SUBMISSION) for _ in range(5)]
    receipts = [future.result(timeout=10) for future in futures]
    assert len(set(receipts)) == 5
    assert db_session.scalar(select(func.count()).select_from(Tip)) == 5


def test_a_failed_group_is_retried_tip_by_tip_without_answering_anyone_twice(
    database: Database,
    server_secrets: ServerSecrets,
    organisation: Organisation,
    db_session: Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    committer = committer_for(database, server_secrets)
    original = TipCommitter._insert
    calls: list[int] = []

    def insert_failing_once(self: TipCommitter, group: list[Any]) -> list[Any]:
        calls.append(len(group))
        if len(calls) == 1:
            # As an unknown station is answered inside the group, then the group fails.
            group[0].done.set_exception(InvalidInput("Choose a station from the list."))
            raise IntegrityError("INSERT", {}, Exception("duplicate ref"))
        return original(self, group)

    monkeypatch.setattr(TipCommitter, "_insert", insert_failing_once)
    monkeypatch.setattr("app.intake.group_commit.GATHER_SECONDS", 0.5)  # one group of three
    futures = [committer.submit(SUBMISSION) for _ in range(3)]
    with pytest.raises(InvalidInput):
        futures[0].result(timeout=10)
    assert all(isinstance(future.result(timeout=10), str) for future in futures[1:])
    assert calls == [3, 1, 1]
    assert db_session.scalar(select(func.count()).select_from(Tip)) == 2


def test_submitting_before_the_key_is_read_is_refused_not_blocking(
    database: Database, server_secrets: ServerSecrets, organisation: Organisation
) -> None:
    committer = TipCommitter(database, server_secrets)
    assert not committer.knows_current_key
    with pytest.raises(Exception, match="not ready"):
        committer.submit(SUBMISSION)
