"""Referring a case: consent enforced, redactions applied before sealing, two people, a bundle only
the recipients open, that verifies against the audit log and fails on any changed byte."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log.checkpoint import verifier_key
from app.audit_log.models import AuditEvent
from app.audit_log.signer import log_verifier
from app.auth.models import Role
from app.cases.models import Case, CaseEvent, CaseTip
from app.crypto import sealing
from app.intake.models import MessageAuthor, Tip, TipStatus
from app.intake.orphans import sweep_orphan_blobs
from app.intake.service import add_message
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets
from app.referrals.bundle import open_bundle, verify_bundle
from app.referrals.content import REDACTION_MARK, Redactor, folded
from app.referrals.models import RecipientKind, Referral, ReferralRecipient, ReferralStatus
from tests.conftest import Client, Organisation
from tests.intake.test_followup_pages import gps_photo
from tests.referrals.factories import (
    IDENTIFYING,
    Recipient,
    ReferralCase,
    add_recipient,
    csrf,
    propose_form,
    referral_case,
    write_private_key_file,
)

ALL_FIELDS = ["answers", "narrative", "messages", "notes"]


@pytest.fixture
def case(
    signed_in: Client,
    organisation: Organisation,
    intake_client: TestClient,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> ReferralCase:
    return referral_case(
        signed_in, organisation, intake_client, db_session, settings, server_secrets, gps_photo()
    )


@pytest.fixture
def partner(signed_in: Client, organisation: Organisation, case: ReferralCase) -> Recipient:
    return add_recipient(signed_in(organisation[Role.LEAD]), signed_in(case.second_lead), "Partner Org")


@pytest.fixture
def police(signed_in: Client, organisation: Organisation, case: ReferralCase) -> Recipient:
    return add_recipient(
        signed_in(organisation[Role.LEAD]), signed_in(case.second_lead), "Garda Unit", kind="authority"
    )


def proposed_id(response: object) -> uuid.UUID:
    location = response.headers["location"]  # type: ignore[attr-defined]
    assert location.startswith("/referrals/"), location
    return uuid.UUID(location.removeprefix("/referrals/"))


def approve(client: TestClient, referral_id: uuid.UUID) -> object:
    return client.post(
        f"/referrals/{referral_id}/approve",
        data={"csrf_token": csrf(client, f"/referrals/{referral_id}")},
        follow_redirects=False,
    )


def full_referral(
    signed_in: Client, organisation: Organisation, case: ReferralCase, partner: Recipient
) -> uuid.UUID:
    """Both shareable reports, everything their consent allows, the photo and the station link."""
    caseworker = signed_in(organisation[Role.CASEWORKER])
    tip = caseworker.get(f"/api/v1/tips/{case.as_sent}").json()
    [photo] = tip["attachments"]
    response = propose_form(
        caseworker,
        case.case_id,
        [partner],
        {
            case.as_sent: {"field": ALL_FIELDS, "file": [photo["id"]]},
            case.anonymised: {"field": ["answers", "narrative"], "redacted": ["yes"]},
        },
        station_links=(case.link_id,),
    )
    assert response.status_code == 303, response.text
    return proposed_id(response)


def bundle_of(client: TestClient, referral_id: uuid.UUID, directory: Path) -> Path:
    download = client.get(f"/referrals/{referral_id}/bundle")
    assert download.status_code == 200, download.text
    assert download.headers["content-type"] == "application/octet-stream"
    path = directory / "referral.daylight-referral"
    path.write_bytes(download.content)
    return path


def test_a_verified_case_is_referred_redacted_and_opens_only_for_its_recipient(
    signed_in: Client,
    organisation: Organisation,
    case: ReferralCase,
    partner: Recipient,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
    tmp_path: Path,
) -> None:
    referral_id = full_referral(signed_in, organisation, case, partner)
    caseworker, lead = signed_in(organisation[Role.CASEWORKER]), signed_in(organisation[Role.LEAD])

    preview = caseworker.get(f"/referrals/{referral_id}")
    assert preview.status_code == 200
    assert "[REDACTED] from the Dublin station phoned my mother" in preview.text
    assert IDENTIFYING not in preview.text.replace(f"{IDENTIFYING}\n", "")  # never in what leaves
    assert "Cork" not in preview.text, "a report passed on without identifying details loses its city"
    assert "+31 70" not in preview.text
    assert f'action="/referrals/{referral_id}/approve"' not in preview.text, "the proposer cannot approve"

    approved = approve(lead, referral_id)
    assert approved.status_code == 303, approved.text
    path = bundle_of(lead, referral_id, tmp_path)
    raw = path.read_bytes()
    assert IDENTIFYING.encode() not in raw
    assert b"Urumqi" not in raw, "nothing readable in the raw file"

    log_key = log_verifier(settings, server_secrets)
    out = tmp_path / "opened"
    report = open_bundle(path, partner.private_key, out, log_key=log_key)
    assert report.ok, report.problems
    files = {str(file.relative_to(out)): file.read_bytes() for file in out.rglob("*") if file.is_file()}
    assert all(IDENTIFYING.encode().lower() not in content.lower() for content in files.values())
    narrative = next(
        content for name, content in files.items() if name.endswith("report.txt") and b"Urumqi" in content
    )
    assert b"[REDACTED] from the Dublin station phoned my mother in Urumqi" in narrative
    manifest = json.loads(files["manifest.json"])
    assert manifest["approved_by"] == organisation[Role.LEAD].username
    assert manifest["proposed_by"] == organisation[Role.CASEWORKER].username
    assert manifest["station_links"][0]["station"].startswith("Dublin")
    assert manifest["redactions"], "where text was redacted is listed (never what)"
    assert {entry["referral_form"] for entry in manifest["consent"]} == {
        "as_sent",
        "without_identifying_details",
    }
    photo = next(content for name, content in files.items() if "/files/" in name)
    assert photo[:2] == b"\xff\xd8"
    assert b"CanaryCam" not in photo

    # The approval's audit event names the manifest the recipient holds.
    event = db_session.scalars(select(AuditEvent).where(AuditEvent.action == "referral.approve")).one()
    assert (
        json.loads(event.details)["manifest_sha256"]
        == __import__("hashlib").sha256(files["manifest.json"]).hexdigest()
    )

    # Another key, even a recipient's of another referral, opens nothing.
    stranger = sealing.generate_private_key()
    refused = verify_bundle(path, stranger, log_key=log_key)
    assert not refused.ok
    assert any("not sealed to this key" in problem for problem in refused.problems)


def test_changing_any_byte_of_the_bundle_fails_verification(
    signed_in: Client,
    organisation: Organisation,
    case: ReferralCase,
    partner: Recipient,
    settings: Settings,
    server_secrets: ServerSecrets,
    tmp_path: Path,
) -> None:
    referral_id = full_referral(signed_in, organisation, case, partner)
    lead = signed_in(organisation[Role.LEAD])
    assert approve(lead, referral_id).status_code == 303
    path = bundle_of(lead, referral_id, tmp_path)
    original = path.read_bytes()
    log_key = log_verifier(settings, server_secrets)
    assert verify_bundle(path, partner.private_key, log_key=log_key).ok
    step = max(1, len(original) // 97)
    for offset in [*range(0, len(original), step), len(original) - 1]:
        altered = bytearray(original)
        altered[offset] ^= 0x01
        path.write_bytes(bytes(altered))
        assert not verify_bundle(path, partner.private_key, log_key=log_key).ok, offset
    path.write_bytes(original + b"\x00")
    assert not verify_bundle(path, partner.private_key, log_key=log_key).ok


def test_a_report_whose_submitter_declined_cannot_be_included(
    signed_in: Client, organisation: Organisation, case: ReferralCase, partner: Recipient, db_session: Session
) -> None:
    caseworker = signed_in(organisation[Role.CASEWORKER])
    page = caseworker.get(f"/cases/{case.case_id}/referrals/new").text
    assert "data-declined" in page
    refused = propose_form(caseworker, case.case_id, [partner], {case.declined: {"field": ["answers"]}})
    assert refused.status_code == 422
    assert "did not agree" in refused.text
    assert db_session.scalar(select(func.count()).select_from(Referral)) == 0


def test_consent_for_partners_only_and_without_identifying_details_is_enforced(
    signed_in: Client,
    organisation: Organisation,
    case: ReferralCase,
    partner: Recipient,
    police: Recipient,
    db_session: Session,
) -> None:
    caseworker = signed_in(organisation[Role.CASEWORKER])
    to_police = propose_form(
        caseworker, case.case_id, [police], {case.anonymised: {"field": ["answers"], "redacted": ["yes"]}}
    )
    assert to_police.status_code == 422
    assert "partner organisations only" in to_police.text
    unchecked = propose_form(caseworker, case.case_id, [partner], {case.anonymised: {"field": ["narrative"]}})
    assert unchecked.status_code == 422
    assert "mark its text as checked" in unchecked.text
    tip = caseworker.get(f"/api/v1/tips/{case.anonymised}").json()
    assert tip["referral_consent"] == "partners_only"
    assert tip["referral_form"] is None  # not said: without identifying details
    assert db_session.scalar(select(func.count()).select_from(Referral)) == 0
    # The police may have the report whose submitter allowed the authorities.
    allowed = propose_form(caseworker, case.case_id, [police], {case.as_sent: {"field": ["answers"]}})
    assert allowed.status_code == 303, allowed.text


def test_two_people_and_a_confirmed_key(
    signed_in: Client, organisation: Organisation, case: ReferralCase, partner: Recipient, db_session: Session
) -> None:
    lead = signed_in(organisation[Role.LEAD])
    # A lead who proposes cannot approve their own referral.
    own = propose_form(lead, case.case_id, [partner], {case.as_sent: {"field": ["answers"]}})
    referral_id = proposed_id(own)
    refused = approve(lead, referral_id)
    assert refused.status_code == 409
    assert db_session.get_one(Referral, referral_id).status is ReferralStatus.PROPOSED
    # A recipient is usable only once a second lead confirmed the fingerprint they compared.
    unconfirmed = add_recipient(lead, signed_in(case.second_lead), "Newsroom", "journalist", confirm=False)
    not_yet = propose_form(lead, case.case_id, [unconfirmed], {case.as_sent: {"field": ["answers"]}})
    assert not_yet.status_code == 422
    same_lead = lead.post(
        f"/referrals/recipients/{unconfirmed.id}/confirm",
        data={"csrf_token": csrf(lead, "/referrals/recipients"), "fingerprint": unconfirmed.fingerprint},
    )
    assert same_lead.status_code == 409
    second = signed_in(case.second_lead)
    wrong = second.post(
        f"/referrals/recipients/{unconfirmed.id}/confirm",
        data={"csrf_token": csrf(second, "/referrals/recipients"), "fingerprint": partner.fingerprint},
    )
    assert wrong.status_code == 422
    assert db_session.get_one(ReferralRecipient, unconfirmed.id).confirmed_by_id is None


def test_a_recipient_key_swapped_in_the_database_is_never_sealed_to(
    signed_in: Client, organisation: Organisation, case: ReferralCase, partner: Recipient, db_session: Session
) -> None:
    caseworker, lead = signed_in(organisation[Role.CASEWORKER]), signed_in(organisation[Role.LEAD])
    referral_id = proposed_id(
        propose_form(caseworker, case.case_id, [partner], {case.as_sent: {"field": ["answers"]}})
    )
    row = db_session.get_one(ReferralRecipient, partner.id)
    row.public_key = sealing.generate_private_key().public_key().raw
    db_session.commit()
    refused = approve(lead, referral_id)
    assert refused.status_code == 500
    assert "integrity" in refused.text
    db_session.expire_all()
    assert db_session.get_one(Referral, referral_id).status is ReferralStatus.PROPOSED


def test_what_changed_after_the_proposal_is_not_approved_unseen(
    signed_in: Client,
    organisation: Organisation,
    case: ReferralCase,
    partner: Recipient,
    db_session: Session,
    server_secrets: ServerSecrets,
) -> None:
    caseworker, lead = signed_in(organisation[Role.CASEWORKER]), signed_in(organisation[Role.LEAD])
    referral_id = proposed_id(
        propose_form(caseworker, case.case_id, [partner], {case.as_sent: {"field": ALL_FIELDS}})
    )
    tip = db_session.get_one(Tip, case.as_sent)
    add_message(
        db_session, tip, "One more thing.", author=MessageAuthor.SUBMITTER, server_secrets=server_secrets
    )
    db_session.commit()
    refused = approve(lead, referral_id)
    assert refused.status_code == 409
    db_session.expire_all()
    assert db_session.get_one(Referral, referral_id).status is ReferralStatus.PROPOSED


def test_every_step_is_audited_and_on_the_case_timeline_and_revocation_is_recorded(
    signed_in: Client,
    organisation: Organisation,
    case: ReferralCase,
    partner: Recipient,
    db_session: Session,
    tmp_path: Path,
) -> None:
    referral_id = full_referral(signed_in, organisation, case, partner)
    lead = signed_in(organisation[Role.LEAD])
    approve(lead, referral_id)
    bundle_of(lead, referral_id, tmp_path)
    revoked = lead.post(
        f"/referrals/{referral_id}/revoke",
        data={"csrf_token": csrf(lead, f"/referrals/{referral_id}")},
        follow_redirects=False,
    )
    assert revoked.status_code == 303
    page = lead.get(f"/referrals/{referral_id}").text
    assert "cannot be recalled" in page
    actions = [
        event.action
        for event in db_session.scalars(
            select(AuditEvent).where(AuditEvent.object_id == str(referral_id)).order_by(AuditEvent.seq)
        )
        if event.action != "referral.read"  # each look at the preview
    ]
    assert actions == [
        "referral.propose",
        "referral.approve",
        "referral.seal",
        "referral.download",
        "referral.revoke",
    ]
    timeline = lead.get(f"/cases/{case.case_id}").text
    for step in ("referral proposed", "referral approved", "referral revoked"):
        assert step in timeline


def test_referral_open_works_on_a_machine_with_no_daylight(
    signed_in: Client,
    organisation: Organisation,
    case: ReferralCase,
    partner: Recipient,
    settings: Settings,
    server_secrets: ServerSecrets,
    tmp_path: Path,
) -> None:
    referral_id = full_referral(signed_in, organisation, case, partner)
    lead = signed_in(organisation[Role.LEAD])
    approve(lead, referral_id)
    path = bundle_of(lead, referral_id, tmp_path)
    elsewhere = tmp_path / "recipient-laptop"
    elsewhere.mkdir()
    key_file = write_private_key_file(elsewhere, partner)
    log_key = log_verifier(settings, server_secrets)
    environment = {name: value for name, value in os.environ.items() if not name.startswith("DAYLIGHT_")} | {
        "HOME": str(elsewhere)
    }
    opened = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "referral",
            "open",
            str(path),
            "--key",
            str(key_file),
            "--verifier-key",
            verifier_key(log_key.public_key, log_key.name),
            "--output",
            str(elsewhere / "case"),
        ],
        cwd=elsewhere,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert opened.returncode == 0, opened.stderr
    assert str(referral_id) in opened.stdout
    assert (elsewhere / "case" / "manifest.json").exists()
    assert not (elsewhere / "data").exists()


def test_a_second_daylight_imports_the_referral_as_a_case_with_its_provenance(
    signed_in: Client,
    organisation: Organisation,
    case: ReferralCase,
    partner: Recipient,
    settings: Settings,
    server_secrets: ServerSecrets,
    tmp_path: Path,
) -> None:
    referral_id = full_referral(signed_in, organisation, case, partner)
    lead = signed_in(organisation[Role.LEAD])
    approve(lead, referral_id)
    path = bundle_of(lead, referral_id, tmp_path)
    key_file = write_private_key_file(tmp_path, partner)
    log_key = log_verifier(settings, server_secrets)
    environment = {name: value for name, value in os.environ.items() if not name.startswith("DAYLIGHT_")}
    receiving = tmp_path / "partner-daylight"
    daylight = [sys.executable, "-m", "app"]
    made = subprocess.run(
        [*daylight, "demo", "--data-dir", str(receiving)], env=environment, capture_output=True, check=False
    )
    assert made.returncode == 0, made.stderr
    import_command = [
        *daylight,
        "referral",
        "import",
        str(path),
        "--key",
        str(key_file),
        "--verifier-key",
        verifier_key(log_key.public_key, log_key.name),
        "--data-dir",
        str(receiving),
        "--member",
        "demo-caseworker",
    ]
    imported = subprocess.run(import_command, env=environment, capture_output=True, text=True, check=False)
    assert imported.returncode == 0, imported.stderr
    assert str(referral_id) in imported.stdout
    their_settings = Settings(data_dir=receiving)
    database = Database.from_settings(their_settings)
    try:
        with database.transaction() as session:
            event = session.scalars(select(AuditEvent).where(AuditEvent.action == "referral.import")).one()
            details = json.loads(event.details)
            assert details["referral"] == str(referral_id)
            assert details["reports"] == 2
            assert details["sender"] == log_key.name
            imported_case = session.get_one(Case, uuid.UUID(str(event.object_id)))
            tips = session.scalars(select(CaseTip.tip_id).where(CaseTip.case_id == imported_case.id)).all()
            assert len(tips) == 2
            assert all(session.get_one(Tip, tip).status is TipStatus.VERIFIED for tip in tips)
            timeline = session.scalars(select(CaseEvent.action).where(CaseEvent.case_id == imported_case.id))
            assert "imported" in list(timeline)
            # Stored under the receiving organisation's keys: nothing readable at rest.
            stored = (
                b"".join(session.get_one(Tip, tip).narrative_encrypted for tip in tips)
                + imported_case.summary_encrypted
            )
            assert b"Urumqi" not in stored
            assert log_key.name.encode() not in stored
    finally:
        database.engine.dispose()
    # A tampered bundle imports nothing.
    altered = bytearray(path.read_bytes())
    altered[len(altered) // 2] ^= 1
    path.write_bytes(bytes(altered))
    refused = subprocess.run(import_command, env=environment, capture_output=True, text=True, check=False)
    assert refused.returncode == 1


@pytest.mark.parametrize(
    ("phrase", "stored"),
    [
        ("Wang Lei", "Officer WANG  LEI came"),  # case, a double space
        ("Wang Lei", "Wa\u200bng\u00a0Lei"),  # a zero-width space inside, a non-breaking space between
        ("Wang Lei", "Wang\nLei"),  # a line break between
        ("Müller", "Mu\u0308ller said"),  # decomposed in the text, composed in the phrase
        ("Mu\u0308ller", "Müller said"),  # and the other way round
        ("Ali", "ＡＬＩ here"),  # full-width letters
        ("Straße", "STRASSE 5"),  # the case folding of ß
        ("Soft", "So\u00adft"),  # a soft hyphen
        ("ئەركىن", "ئەر\u200cكىن"),  # Uyghur with a zero-width non-joiner
    ],
)
def test_redaction_finds_a_name_however_it_is_written(phrase: str, stored: str) -> None:
    redacted, count = Redactor([phrase]).apply(stored)
    assert count == 1
    assert folded(phrase)[0].strip() not in folded(redacted)[0]
    assert REDACTION_MARK in redacted


def test_overlapping_phrases_leave_no_fragment_between_them() -> None:
    redacted, count = Redactor(["Wang Lei", "Lei Ming"]).apply("It was Wang Lei Ming who called.")
    assert redacted == f"It was {REDACTION_MARK} who called."
    assert count == 1


def test_the_cover_note_leaves_redacted_in_the_manifest_too(
    signed_in: Client,
    organisation: Organisation,
    case: ReferralCase,
    partner: Recipient,
    settings: Settings,
    server_secrets: ServerSecrets,
    tmp_path: Path,
) -> None:
    caseworker, lead = signed_in(organisation[Role.CASEWORKER]), signed_in(organisation[Role.LEAD])
    referral_id = proposed_id(
        propose_form(
            caseworker,
            case.case_id,
            [partner],
            {case.as_sent: {"field": ["answers"]}},
            cover_note=f"About {IDENTIFYING.upper()}, who called twice.",
        )
    )
    approve(lead, referral_id)
    path = bundle_of(lead, referral_id, tmp_path)
    out = tmp_path / "opened"
    assert open_bundle(path, partner.private_key, out, log_key=log_verifier(settings, server_secrets)).ok
    for file in out.rglob("*"):
        if file.is_file():
            assert IDENTIFYING.casefold() not in file.read_text(errors="replace").casefold(), file.name
    assert json.loads((out / "manifest.json").read_text())["cover_note"].startswith(f"About {REDACTION_MARK}")


def test_no_report_goes_to_a_journalist_and_notes_need_the_redaction_mark(
    signed_in: Client, organisation: Organisation, case: ReferralCase, db_session: Session
) -> None:
    lead = signed_in(organisation[Role.LEAD])
    newsroom = add_recipient(lead, signed_in(case.second_lead), "Newsroom", "journalist")
    caseworker = signed_in(organisation[Role.CASEWORKER])
    refused = propose_form(caseworker, case.case_id, [newsroom], {case.as_sent: {"field": ["answers"]}})
    assert refused.status_code == 422
    assert "journalist" in refused.text
    partner = add_recipient(lead, signed_in(case.second_lead), "Partner two")
    notes = propose_form(caseworker, case.case_id, [partner], {case.anonymised: {"field": ["notes"]}})
    assert notes.status_code == 422
    assert db_session.scalar(select(func.count()).select_from(Referral)) == 0


def test_a_recipient_retired_after_approval_is_not_sealed_to(
    signed_in: Client, organisation: Organisation, case: ReferralCase, partner: Recipient, db_session: Session
) -> None:
    caseworker, lead = signed_in(organisation[Role.CASEWORKER]), signed_in(organisation[Role.LEAD])
    referral_id = proposed_id(
        propose_form(caseworker, case.case_id, [partner], {case.as_sent: {"field": ["answers"]}})
    )
    assert approve(lead, referral_id).status_code == 303
    retired = lead.post(
        f"/referrals/recipients/{partner.id}/retire",
        data={"csrf_token": csrf(lead, "/referrals/recipients")},
        follow_redirects=False,
    )
    assert retired.status_code == 303
    assert lead.get(f"/referrals/{referral_id}/bundle").status_code == 422
    db_session.expire_all()
    assert db_session.get_one(Referral, referral_id).bundle_blob_id is None


def test_a_recipients_kind_or_confirmation_changed_in_the_database_is_refused(
    signed_in: Client, organisation: Organisation, case: ReferralCase, partner: Recipient, db_session: Session
) -> None:
    caseworker = signed_in(organisation[Role.CASEWORKER])
    row = db_session.get_one(ReferralRecipient, partner.id)
    row.kind = RecipientKind.AUTHORITY  # a police unit passed off as a partner, or the reverse
    db_session.commit()
    refused = propose_form(caseworker, case.case_id, [partner], {case.as_sent: {"field": ["answers"]}})
    assert refused.status_code == 500
    assert db_session.scalar(select(func.count()).select_from(Referral)) == 0


def test_a_sealed_bundle_is_no_orphan_for_the_blob_sweep(
    signed_in: Client,
    organisation: Organisation,
    case: ReferralCase,
    partner: Recipient,
    settings: Settings,
    database: Database,
    tmp_path: Path,
) -> None:
    referral_id = full_referral(signed_in, organisation, case, partner)
    lead = signed_in(organisation[Role.LEAD])
    approve(lead, referral_id)
    first = bundle_of(lead, referral_id, tmp_path).read_bytes()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=30)
    assert sweep_orphan_blobs(settings, database, older_than=dt.timedelta(hours=1), now=later) == 0
    again = lead.get(f"/referrals/{referral_id}/bundle")
    assert again.status_code == 200
    assert again.content == first


def test_the_entry_points_that_sweep_or_back_up_blobs_know_every_column_naming_one() -> None:
    script = (
        "import app.entrypoints.serve, app.entrypoints.backup, app.entrypoints.doctor\n"
        "from app.kit.blobs import blob_naming_columns\n"
        "print(sorted(str(column) for column in blob_naming_columns()))"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "TipAttachment.id" in shown.stdout
    assert "Referral.bundle_blob_id" in shown.stdout
