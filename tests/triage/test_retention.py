"""Retention on both databases: expired tips are crypto-shredded, the rest untouched, the trail kept."""

from __future__ import annotations

import datetime as dt
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import func, select

from app.audit_log.models import AuditEvent
from app.entrypoints import cli
from app.entrypoints.apps import create_intake_app
from app.entrypoints.organisation import init_organisation
from app.intake.models import Tip, TipAttachment, TipMessage, TipStatus
from app.kit.blobs import BlobStore
from app.kit.config import Settings
from app.kit.db import Database
from app.triage import retention
from tests.conftest import CHEAP_ARGON2

OLD = dt.date(2020, 1, 1)


def organisation_with_tips(
    data_dir: Path, database_url: str | None
) -> tuple[Settings, Database, dict[str, object]]:
    settings = Settings(
        data_dir=data_dir, argon2=CHEAP_ARGON2, database_url=SecretStr(database_url) if database_url else None
    )
    database = Database.from_settings(settings)
    init_organisation(settings, database)
    ids: dict[str, object] = {}
    with TestClient(create_intake_app(settings, database=database), base_url="https://intake") as intake:
        for name in ("old_rejected", "old_new", "recent_rejected", "old_verified", "recent_new"):
            response = intake.post(
                "/api/v1/tips",
                data={"narrative": f"tip {name}"},
                files=[("files", (f"{name}.txt", b"evidence", "text/plain"))],
            )
            assert response.status_code == 201
            receipt = response.json()["receipt"]
            assert (
                intake.post(
                    "/api/v1/followup/messages", json={"receipt": receipt, "body": "more"}
                ).status_code
                == 201
            )
            with database.transaction() as session:
                tip = session.scalars(select(Tip).order_by(Tip.id)).all()
                newest = next(t for t in tip if t.id not in ids.values())
                ids[name] = newest.id
    plan = {
        "old_rejected": (TipStatus.REJECTED, OLD),
        "old_new": (TipStatus.NEW, OLD),
        "recent_rejected": (TipStatus.REJECTED, dt.date.today()),
        "old_verified": (TipStatus.VERIFIED, OLD),
        "recent_new": (TipStatus.NEW, dt.date.today()),
    }
    with database.transaction() as session:
        for name, (status, day) in plan.items():
            tip = session.get_one(Tip, ids[name])
            tip.status, tip.last_activity_on = status, day
    return settings, database, ids


def test_purge_shreds_expired_tips_and_keeps_their_trail(
    data_dir: Path, committed_database_url: str | None
) -> None:
    settings, database, ids = organisation_with_tips(data_dir, committed_database_url)
    assert len(list(settings.blobs_dir.iterdir())) == 5
    with database.transaction() as session:
        report = retention.purge_expired(session, settings, BlobStore(settings.blobs_dir))
    assert (report.rejected, report.stale_new, report.files) == (1, 1, 2)
    with database.transaction() as session:
        left = set(session.scalars(select(Tip.id)))
        assert left == {ids["recent_rejected"], ids["old_verified"], ids["recent_new"]}
        assert session.scalar(select(func.count()).select_from(TipAttachment)) == 3
        assert session.scalar(select(func.count()).select_from(TipMessage)) == 3
        purged = session.scalars(select(AuditEvent).where(AuditEvent.action == "tip.purge")).all()
        assert {(event.object_id, event.details) for event in purged} == {
            (str(ids["old_rejected"]), '{"reason":"rejected"}'),
            (str(ids["old_new"]), '{"reason":"stale_new"}'),
        }
    assert len(list(settings.blobs_dir.iterdir())) == 3
    # Run again: nothing left to do.
    with database.transaction() as session:
        again = retention.purge_expired(session, settings, BlobStore(settings.blobs_dir))
    assert (again.rejected, again.stale_new) == (0, 0)
    database.engine.dispose()


def test_purge_on_several_nodes_at_once_purges_each_tip_once(
    data_dir: Path, committed_database_url: str | None
) -> None:
    settings, database, _ = organisation_with_tips(data_dir, committed_database_url)
    barrier = threading.Barrier(3)

    def node(_: int) -> retention.PurgeReport:
        node_database = Database.from_settings(settings)
        try:
            barrier.wait()
            with node_database.transaction() as session:
                return retention.purge_expired(session, settings, BlobStore(settings.blobs_dir))
        finally:
            node_database.engine.dispose()

    with ThreadPoolExecutor(3) as pool:
        reports = list(pool.map(node, range(3)))
    assert sum(report.rejected + report.stale_new for report in reports) == 2
    with database.transaction() as session:
        assert (
            session.scalar(
                select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "tip.purge")
            )
            == 2
        )
    database.engine.dispose()


def test_the_purge_command_reports_what_it_did(
    data_dir: Path,
    committed_database_url: str | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, database, _ = organisation_with_tips(data_dir, committed_database_url)
    database.engine.dispose()
    if committed_database_url:
        monkeypatch.setenv("DAYLIGHT_DATABASE_URL", committed_database_url)
    assert cli.main(["purge", "--data-dir", str(data_dir)]) == 0
    output = capsys.readouterr().out
    assert "purged 2 tips (1 rejected over 90 days, 1 untouched in new over 365 days) and 2 files" in output
