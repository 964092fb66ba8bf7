"""`daylight keys rotate` on both databases: thousands of tips re-sealed to a new intake key that
opens every one of them, the old key destroyed and useless, an interrupted rotation resumed, and
every way of starting one without the old key refused with nothing changed."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.audit_log.models import AuditEvent
from app.auth.models import Role, StaffAccount
from app.auth.password_keys import password_matches, unwrap_personal_key
from app.auth.principal import Principal, UnlockedKeys
from app.auth.sessions import resume_session, start_session
from app.cases import service as cases_service
from app.cases.models import CASE_DATA_KEY, CASE_TITLE, Case
from app.cases.schemas import CaseCreate
from app.crypto import DecryptionError, sealed_keys, sealing
from app.custody.models import INTAKE_KEY_GRANT, IntakeKey, IntakeKeyGrant, IntakeKeyRotation
from app.custody.service import recover_intake_key, unlock_granted_keys
from app.entrypoints import cli
from app.entrypoints.apps import create_staff_app
from app.entrypoints.organisation import init_organisation
from app.intake import service as intake_service
from app.intake.models import (
    ATTACHMENT_BLOB,
    ATTACHMENT_DETAILS,
    FOLLOWUP_ATTACHMENT_KEY,
    MESSAGE_BODY,
    MESSAGE_DATA_KEY,
    TIP_DATA_KEY,
    TIP_NARRATIVE,
    MessageAuthor,
    Tip,
    TipAttachment,
    TipMessage,
    TipStatus,
    attachment_row_id,
    message_row_id,
)
from app.intake.schemas import TipSubmission
from app.keys import rotation
from app.kit.blobs import blob_storage_for
from app.kit.config import Settings, load_settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets, load_server_secrets
from app.labels import service as labels_service
from app.labels.models import LABEL_DATA_KEY, LABEL_NAME, Label
from app.schema import migrate, upgrade_to_head
from app.triage import labelling, workflow
from app.triage import reading as triage_reading
from tests.auth.factories import StaffMember, login, make_member
from tests.conftest import CHEAP_ARGON2
from tests.custody.factories import IntakeKeyFixture
from tests.intake.factories import make_tip

RECOVERY_KEY_PATTERN = r"(?:[0-9A-Z]{4}-){7}[0-9A-Z]{4}"


@dataclass
class Organisation:
    data_dir: Path
    settings: Settings
    database: Database
    secrets: ServerSecrets
    intake: IntakeKeyFixture
    lead: StaffMember
    caseworker: StaffMember

    def principal(self, member: StaffMember) -> Principal:
        """The member as a login would make them: with the intake keys their grants open now."""
        with self.database.transaction() as session:
            account = session.get_one(StaffAccount, member.account.id)
            login_keys = password_matches(account, member.password)
            assert login_keys is not None
            personal = unwrap_personal_key(account, login_keys)
            keys = UnlockedKeys(
                personal=personal,
                intake=unlock_granted_keys(
                    session, account.id, personal, key_integrity_key=self.secrets.key_integrity_key
                ),
            )
        return Principal(
            account_id=account.id,
            username=account.username,
            role=Role(account.role),
            session_id=uuid.uuid4(),
            keys=keys,
            reauthenticated_at=dt.datetime.now(dt.UTC),
            csrf_token="",
        )


@pytest.fixture
def org(
    data_dir: Path, committed_database_url: str | None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Organisation]:
    if committed_database_url:
        monkeypatch.setenv("DAYLIGHT_DATABASE_URL", committed_database_url)
    settings = load_settings(data_dir / "org").model_copy(update={"argon2": CHEAP_ARGON2})
    database = Database.from_settings(settings)
    created = init_organisation(settings, database)
    secrets = load_server_secrets(settings.secrets_dir)
    intake = IntakeKeyFixture(
        key=created.intake_key, private=created.intake_private, recovery_key=created.recovery_key
    )
    with database.transaction() as session:
        lead = make_member(session, settings, secrets, Role.LEAD, grant=intake)
        caseworker = make_member(session, settings, secrets, Role.CASEWORKER, grant=intake)
    try:
        yield Organisation(data_dir / "org", settings, database, secrets, intake, lead, caseworker)
    finally:
        database.engine.dispose()


def narrative_of(number: int) -> str:
    return f"Report {number}: a visit from the station about my family."


def submit_tips(org: Organisation, count: int, *, start: int = 0) -> list[uuid.UUID]:
    ids = []
    with org.database.transaction() as session:
        for number in range(start, start + count):
            tip_id, _ = make_tip(
                session,
                org.secrets,
                narrative=narrative_of(number),
                tactics=["surveillance"] if number % 2 else ["family_pressure"],
                host_city="Dublin",
            )
            ids.append(tip_id)
    return ids


def add_followups(org: Organisation, tip_ids: list[uuid.UUID]) -> None:
    """A submitter message, a staff reply and a follow-up file on each tip."""
    blob_store = blob_storage_for(org.settings, org.database)
    with org.database.transaction() as session:
        for tip_id in tip_ids:
            tip = session.get_one(Tip, tip_id)
            intake_service.add_message(
                session,
                tip,
                f"more about {tip_id}",
                author=MessageAuthor.SUBMITTER,
                server_secrets=org.secrets,
            )
            intake_service.add_message(
                session,
                tip,
                "thank you",
                author=MessageAuthor.STAFF,
                server_secrets=org.secrets,
                author_account_id=org.lead.account.id,
            )
            draft = intake_service.start_followup_files(session, org.secrets)
            writer = draft.open_attachment(
                session, blob_store, settings=org.settings, content_type="text/plain"
            )
            writer.write(f"file of {tip_id}".encode())
            writer.close()
            intake_service.add_followup_files(session, tip, draft)


def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    org: Organisation,
    stdin: str,
    *extra: str,
    confirm: bool = True,
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(
        ["keys", "rotate", "--data-dir", str(org.data_dir), *extra, *(["--yes"] if confirm else [])]
    )
    out, err = capsys.readouterr()
    return code, out, err


def rows(session: Session, model: type[object]) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def test_a_rotation_over_thousands_of_tips_leaves_every_one_readable_with_the_new_key_only(
    org: Organisation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tip_ids = submit_tips(org, 3000)
    with_followups = tip_ids[::100]
    add_followups(org, with_followups)
    lead_before = org.principal(org.lead)
    caseworker_keys = org.principal(org.caseworker).keys
    with org.database.transaction() as session:
        # Opened tips carry blind-index tags under the old key's filter key.
        for tip_id in tip_ids[:10]:
            triage_reading.read_tip(session, lead_before, tip_id, integrity_key=org.secrets.key_integrity_key)
        session.execute(update(Tip).where(Tip.id.in_(tip_ids[:3])).values(status=TipStatus.VERIFIED))
        case = cases_service.create_case(
            session, lead_before, CaseCreate(title="Dublin station visits", tip_ids=tip_ids[:3]), org.secrets
        )
        case_id = case.id
        cases_service.add_note(session, lead_before, case_id, "a case note from before")
        _, tip_data_key = triage_reading.open_tip(session, lead_before, tip_ids[0])
        workflow.add_note(session, lead_before, tip_ids[0], "a tip note from before", tip_data_key)
        # A session open before the rotation carries the old key, unlocked.
        old_cookie = start_session(
            session,
            session.get_one(StaffAccount, org.caseworker.account.id),
            caseworker_keys,
            integrity_key=org.secrets.key_integrity_key,
        )

    code, out, err = run_cli(monkeypatch, capsys, org, org.intake.recovery_key + "\n")

    assert code == 0, err
    assert "re-sealed 3000 tips, 60 messages, 30 files, 1 cases" in out
    assert "3091/3091" in err  # the progress bar reached the end
    [new_recovery_key] = re.findall(RECOVERY_KEY_PATTERN, out)
    with org.database.transaction() as session:
        [new_key] = session.scalars(select(IntakeKey)).all()
        assert new_key.version == 2
        new_private = recover_intake_key(new_key, new_recovery_key)
        assert rows(session, IntakeKeyRotation) == 0
        assert set(session.scalars(select(IntakeKeyGrant.key_version))) == {2}
        assert rows(session, IntakeKeyGrant) == 2

        # Every tip opens with the new key, its content untouched under its original AAD.
        tips = list(session.scalars(select(Tip)))
        assert len(tips) == 3000
        narratives = set()
        for tip in tips:
            assert (tip.intake_key_version, tip.content_key_version) == (2, 1)
            data_key = TIP_DATA_KEY.open(new_private, tip.sealed_data_key, row_id=str(tip.id), key_version=2)
            narratives.add(
                TIP_NARRATIVE.open(
                    data_key, tip.narrative_encrypted, row_id=str(tip.id), key_version=tip.content_key_version
                ).decode()
            )
        assert narratives == {narrative_of(number) for number in range(3000)}
        for message in session.scalars(select(TipMessage)):
            row_id = message_row_id(message.tip_id, message.id)
            data_key = MESSAGE_DATA_KEY.open(
                new_private, message.sealed_data_key, row_id=row_id, key_version=2
            )
            assert MESSAGE_BODY.open(data_key, message.body_encrypted, row_id=row_id, key_version=1)
        blob_store = blob_storage_for(org.settings, org.database)
        for attachment in session.scalars(select(TipAttachment)):
            assert attachment.sealed_data_key is not None
            file_key = FOLLOWUP_ATTACHMENT_KEY.open(
                new_private,
                attachment.sealed_data_key,
                row_id=attachment_row_id(attachment.tip_id, attachment.id),
                key_version=2,
            )
            assert (
                json.loads(
                    ATTACHMENT_DETAILS.open(
                        file_key, attachment.details_encrypted, row_id=str(attachment.id), key_version=1
                    )
                )["size"]
                > 0
            )
            source = blob_store.open(attachment.id)
            try:
                content = b"".join(
                    ATTACHMENT_BLOB.decrypt_chunks(source, file_key, row_id=str(attachment.id), key_version=1)
                )
            finally:
                source.close()
            assert content == f"file of {attachment.tip_id}".encode()
        stored_case = session.get_one(Case, case_id)
        case_key = CASE_DATA_KEY.open(
            new_private, stored_case.sealed_data_key, row_id=str(case_id), key_version=2
        )
        assert (
            CASE_TITLE.open(case_key, stored_case.title_encrypted, row_id=str(case_id), key_version=1)
            == b"Dublin station visits"
        )

        # The old private key opens none of it: every wrap it opened is gone.
        for tip in tips[:50]:
            with pytest.raises(DecryptionError):
                TIP_DATA_KEY.open(org.intake.private, tip.sealed_data_key, row_id=str(tip.id), key_version=2)
        # And the sessions that carried it have ended.
        assert (
            resume_session(session, old_cookie, org.settings, integrity_key=org.secrets.key_integrity_key)
            is None
        )
        actions = list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.action.like("key.rotate.%"))
                .order_by(AuditEvent.seq)
            )
        )
        assert actions == ["key.rotate.start", "key.rotate.finish"]

    # A member logs in again and works as before: reads, filters by tactic, opens the case.
    with TestClient(create_staff_app(org.settings, database=org.database), base_url="https://staff") as staff:
        assert login(staff, org.caseworker).status_code == 200
        # The queue indexes the tips nobody opened, a batch per request, under the new key; the
        # tags of those opened before the rotation were rewritten under it. Then the filter finds
        # exactly the odd tips, tagged surveillance.
        while staff.get("/api/v1/tips", params={"limit": "1"}).json()["unindexed"]:
            pass
        surveillance: list[str] = []
        cursor = None
        while True:
            params = {"tactic": "surveillance", "limit": "200", **({"cursor": cursor} if cursor else {})}
            page = staff.get("/api/v1/tips", params=params).json()
            surveillance += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert sorted(surveillance) == sorted(str(tip_id) for tip_id in tip_ids[1::2])
        detail = staff.get(f"/api/v1/tips/{with_followups[1]}").json()
        assert detail["narrative"] == narrative_of(100)
        assert [message["body"] for message in detail["messages"]] == [
            f"more about {with_followups[1]}",
            "thank you",
        ]
        [attachment] = detail["attachments"]
        download = staff.get(f"/api/v1/tips/{with_followups[1]}/attachments/{attachment['id']}")
        assert download.content == f"file of {with_followups[1]}".encode()
        case_detail = staff.get(f"/api/v1/cases/{case_id}").json()
        assert case_detail["title"] == "Dublin station visits"
        assert [note["body"] for note in case_detail["notes"]] == ["a case note from before"]
        tip_notes = staff.get(f"/api/v1/tips/{tip_ids[0]}").json()["notes"]
        assert [note["body"] for note in tip_notes] == ["a tip note from before"]

    # The old recovery key opens nothing any more; the audit log still verifies.
    monkeypatch.setattr("sys.stdin", io.StringIO(org.intake.recovery_key + "\n"))
    assert (
        cli.main(["keys", "recover", "--data-dir", str(org.data_dir), "--username", org.caseworker.username])
        == 1
    )
    assert cli.main(["audit", "verify", "--data-dir", str(org.data_dir)]) == 0


def test_an_interrupted_rotation_resumes_where_it_stopped(
    org: Organisation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tip_ids = submit_tips(org, 50)
    reseal_batch = rotation.reseal_batch
    calls = 0

    def crash_on_the_third_batch(*args: object, **kwargs: object) -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt
        return reseal_batch(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(rotation, "reseal_batch", crash_on_the_third_batch)
    code, out, err = run_cli(
        monkeypatch,
        capsys,
        org,
        f"{org.lead.password}\n{org.lead.otp()}\n",
        "--username",
        org.lead.username,
        "--batch-size",
        "10",
    )
    assert code == 130
    assert "run the same command again to resume" in err
    [recovery_key_of_2] = re.findall(RECOVERY_KEY_PATTERN, out)
    with org.database.transaction() as session:
        versions = dict(
            session.execute(
                select(Tip.intake_key_version, func.count()).group_by(Tip.intake_key_version)
            ).all()
        )
        assert versions == {1: 30, 2: 20}
        assert rows(session, IntakeKeyRotation) == 1

    assert cli.main(["doctor", "--data-dir", str(org.data_dir)]) == 1
    assert "FAIL  intake key: a rotation from version 1 to 2 is unfinished" in capsys.readouterr().out

    # Halfway, a lead who logs in holds both versions and reads tips of each; intake seals to the new one.
    halfway = org.principal(org.lead)
    assert sorted(halfway.keys.intake) == [1, 2]
    with org.database.transaction() as session:
        for tip_id in (tip_ids[0], tip_ids[-1]):
            assert triage_reading.read_tip(
                session, halfway, tip_id, integrity_key=org.secrets.key_integrity_key
            ).narrative.startswith("Report")
    [late_tip] = submit_tips(org, 1, start=50)
    with org.database.transaction() as session:
        assert session.get_one(Tip, late_tip).intake_key_version == 2

    monkeypatch.setattr(rotation, "reseal_batch", reseal_batch)
    # The old recovery key alone no longer resumes it: the new key is stored nowhere under the old.
    code, _, err = run_cli(monkeypatch, capsys, org, org.intake.recovery_key + "\n")
    assert code == 1
    assert "both versions' recovery keys" in err
    code, out, err = run_cli(monkeypatch, capsys, org, f"{recovery_key_of_2}\n{org.intake.recovery_key}\n")
    assert code == 0, err
    assert "Resuming the rotation from intake key version 1 to 2" in out
    assert not re.findall(RECOVERY_KEY_PATTERN, out)  # version 2's recovery key was shown once, at the start
    with org.database.transaction() as session:
        [key] = session.scalars(select(IntakeKey)).all()
        new_private = recover_intake_key(key, recovery_key_of_2)
        for tip in session.scalars(select(Tip)):
            assert tip.intake_key_version == 2
            TIP_DATA_KEY.open(new_private, tip.sealed_data_key, row_id=str(tip.id), key_version=2)
        actions = list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.action.like("key.rotate.%"))
                .order_by(AuditEvent.seq)
            )
        )
        assert actions == ["key.rotate.start", "key.rotate.resume", "key.rotate.finish"]


def test_a_resumed_rotation_refuses_a_new_key_substituted_in_a_grant(
    org: Organisation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Anyone can seal a key of their own to a lead's public key and write it into the lead's grant
    of the new version; a resumed rotation that took it would re-seal every data key to the writer.
    The new version's public key, under the key-integrity MAC, catches the swap."""
    submit_tips(org, 3)
    with org.database.transaction() as session:
        rotation.start(
            session, {1: org.intake.private}, audit.SYSTEM, key_integrity_key=org.secrets.key_integrity_key
        )
    attacker_key = sealing.generate_private_key()
    with org.database.transaction() as session:
        lead = session.get_one(StaffAccount, org.lead.account.id)
        assert lead.public_key is not None
        session.execute(
            update(IntakeKeyGrant)
            .where(IntakeKeyGrant.account_id == lead.id, IntakeKeyGrant.key_version == 2)
            .values(
                sealed_private_key=INTAKE_KEY_GRANT.seal(
                    sealing.PublicKey(lead.public_key), attacker_key.raw, row_id=str(lead.id), key_version=2
                )
            )
        )

    code, _, err = run_cli(
        monkeypatch, capsys, org, f"{org.lead.password}\n{org.lead.otp()}\n", "--username", org.lead.username
    )

    assert code == 1
    # The forged grant is dropped at login (it does not open the MAC'd intake key of version 2),
    # so the lead does not hold both versions, and nothing is resealed to the attacker's key.
    assert "holds both" in err
    with org.database.transaction() as session:
        assert set(session.scalars(select(Tip.intake_key_version))) == {1}


def test_a_rotation_in_a_process_that_registered_no_sealed_data_keys_is_refused_and_changes_nothing(
    org: Organisation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """With no kind registered, nothing would be left at the old version and the old key would
    be destroyed with every data key still sealed to it."""
    submit_tips(org, 3)
    monkeypatch.setattr(sealed_keys, "_REGISTERED", {})

    code, _, err = run_cli(monkeypatch, capsys, org, org.intake.recovery_key + "\n")

    assert code == 1
    assert "no sealed data keys are registered" in err
    with org.database.transaction() as session:
        assert list(session.scalars(select(IntakeKey.version))) == [1]
        assert rows(session, IntakeKeyRotation) == 0
        assert set(session.scalars(select(Tip.intake_key_version))) == {1}


def test_a_rotation_grants_the_new_key_only_after_the_operator_saw_who_gets_it(
    org: Organisation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rotating because a member's key leaked is pointless if that member gets the new one: the
    list is shown first, and nothing starts unconfirmed."""
    code, out, err = run_cli(monkeypatch, capsys, org, org.intake.recovery_key + "\n", confirm=False)
    assert code == 1
    assert "confirm with --yes" in err
    assert sorted([org.caseworker.username, org.lead.username]) == sorted(
        re.search(r"current one: (.*)\.", out).group(1).split(", ")  # type: ignore[union-attr]
    )
    with org.database.transaction() as session:
        assert list(session.scalars(select(IntakeKey.version))) == [1]
        # A revoked member is not offered the new key.
        session.execute(delete(IntakeKeyGrant).where(IntakeKeyGrant.account_id == org.caseworker.account.id))
    code, out, err = run_cli(monkeypatch, capsys, org, org.intake.recovery_key + "\n")
    assert code == 0, err
    assert org.caseworker.username not in out
    with org.database.transaction() as session:
        assert list(session.scalars(select(IntakeKeyGrant.account_id))) == [org.lead.account.id]


def test_a_report_whose_upload_began_before_the_rotation_is_sealed_to_the_new_key(
    org: Organisation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A slow upload started under the old key and finished after it was destroyed: its data key
    goes to the current key at commit, its content stays bound to the version it was written under."""
    with org.database.transaction() as session:
        draft = intake_service.start_tip(session, org.secrets)
    code, out, err = run_cli(monkeypatch, capsys, org, org.intake.recovery_key + "\n")
    assert code == 0, err
    [new_recovery_key] = re.findall(RECOVERY_KEY_PATTERN, out)
    with org.database.transaction() as session:
        intake_service.finish_tip(
            session, draft, TipSubmission.model_validate({"narrative": "Sent as the key changed."})
        )
    with org.database.transaction() as session:
        tip = session.get_one(Tip, draft.id)
        assert (tip.intake_key_version, tip.content_key_version) == (2, 1)
        new_private = recover_intake_key(session.get_one(IntakeKey, 2), new_recovery_key)
        data_key = TIP_DATA_KEY.open(new_private, tip.sealed_data_key, row_id=str(tip.id), key_version=2)
        assert (
            TIP_NARRATIVE.open(data_key, tip.narrative_encrypted, row_id=str(tip.id), key_version=1)
            == b"Sent as the key changed."
        )


@pytest.mark.parametrize("attempt", ["wrong recovery key", "caseworker login", "wrong password"])
def test_a_rotation_without_the_old_key_or_by_a_non_lead_is_refused_and_changes_nothing(
    org: Organisation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], attempt: str
) -> None:
    submit_tips(org, 3)
    extra: tuple[str, ...] = ()
    if attempt == "wrong recovery key":
        stdin = "AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH\n"
    elif attempt == "caseworker login":
        stdin, extra = (
            f"{org.caseworker.password}\n{org.caseworker.otp()}\n",
            ("--username", org.caseworker.username),
        )
    else:
        stdin, extra = f"not-the-password\n{org.lead.otp()}\n", ("--username", org.lead.username)

    code, out, err = run_cli(monkeypatch, capsys, org, stdin, *extra)

    assert code == 1
    assert "nothing changed" in err
    assert not re.findall(RECOVERY_KEY_PATTERN, out)
    with org.database.transaction() as session:
        assert list(session.scalars(select(IntakeKey.version))) == [1]
        assert rows(session, IntakeKeyRotation) == 0
        assert set(session.scalars(select(Tip.intake_key_version))) == {1}
        logins = list(session.scalars(select(AuditEvent.outcome).where(AuditEvent.action == "auth.login")))
    # A refused login counts towards the lockout and is in the audit log, as at the login page.
    assert (
        logins
        == {"wrong recovery key": [], "caseworker login": ["success"], "wrong password": ["failure"]}[attempt]
    )


CHILD_TABLES = (
    "tips",
    "tip_messages",
    "tip_attachments",
    "tip_tags",
    "tip_notes",
    "tip_events",
    "cases",
    "case_tips",
    "case_members",
    "case_notes",
)


def table_counts(database: Database) -> dict[str, int]:
    with database.engine.connect() as connection:
        return {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in CHILD_TABLES
        }


def test_the_key_rotation_migration_keeps_every_row_down_and_up_and_refuses_to_forget_a_rotation(
    org: Organisation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite rebuilds `tips` and `cases` to change them; with foreign keys enforced that rebuild
    would cascade into every message, file, tag, note and case membership."""
    tip_ids = submit_tips(org, 4)
    add_followups(org, tip_ids[:2])
    lead = org.principal(org.lead)
    with org.database.transaction() as session:
        triage_reading.read_tip(session, lead, tip_ids[0], integrity_key=org.secrets.key_integrity_key)
        session.execute(update(Tip).where(Tip.id.in_(tip_ids[:2])).values(status=TipStatus.VERIFIED))
        case = cases_service.create_case(
            session, lead, CaseCreate(title="Case", tip_ids=tip_ids[:2]), org.secrets
        )
        cases_service.add_note(session, lead, case.id, "a note")
        _, data_key = triage_reading.open_tip(session, lead, tip_ids[1])
        workflow.add_note(session, lead, tip_ids[1], "a tip note", data_key)
    before = table_counts(org.database)
    assert all(before.values()), before

    migrate(org.database.engine, "d38e9a8ccaed", downgrade=True)
    assert table_counts(org.database) == before
    upgrade_to_head(org.database.engine)
    assert table_counts(org.database) == before

    code, _, err = run_cli(monkeypatch, capsys, org, org.intake.recovery_key + "\n")
    assert code == 0, err
    # The upgrade left every tip to the next key holder's indexing (its tags without language):
    # the rotation scrubs such old-key tags instead of rewriting them. Nothing else changes.
    rotated = table_counts(org.database)
    assert rotated == {**before, "tip_tags": 0}
    with pytest.raises(RuntimeError, match="from before a key rotation"):
        migrate(org.database.engine, "d38e9a8ccaed", downgrade=True)
    assert table_counts(org.database) == rotated


def test_a_rotation_reseals_labels_whose_names_open_with_the_new_key_only(
    org: Organisation, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    [tip_id] = submit_tips(org, 1)
    lead = org.principal(org.lead)
    with org.database.transaction() as session:
        label_id = labels_service.create_label(session, lead, "Dublin station", org.secrets).id
        labelling.label_tip(session, lead, tip_id, label_id)

    code, out, err = run_cli(monkeypatch, capsys, org, org.intake.recovery_key + "\n")

    assert code == 0, err
    assert "1 labels" in out
    [new_recovery_key] = re.findall(RECOVERY_KEY_PATTERN, out)
    with org.database.transaction() as session:
        new_private = recover_intake_key(session.scalars(select(IntakeKey)).one(), new_recovery_key)
        label = session.get_one(Label, label_id)
        assert (label.intake_key_version, label.content_key_version) == (2, 1)
        data_key = LABEL_DATA_KEY.open(
            new_private, label.sealed_data_key, row_id=str(label_id), key_version=2
        )
        name = LABEL_NAME.open(data_key, label.name_encrypted, row_id=str(label_id), key_version=1)
        assert name == b"Dublin station"
        with pytest.raises(DecryptionError):
            LABEL_DATA_KEY.open(
                org.intake.private, label.sealed_data_key, row_id=str(label_id), key_version=2
            )
    # A member logs in again and sees the label, and the report it is on.
    with TestClient(create_staff_app(org.settings, database=org.database), base_url="https://staff") as staff:
        assert login(staff, org.caseworker).status_code == 200
        [listed] = staff.get("/api/v1/labels").json()
        assert (listed["name"], listed["reports"]) == ("Dublin station", 1)
