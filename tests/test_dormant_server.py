"""The dormant-server promise (DESIGN 4).

A copy of the database, the data dir (secrets included) and the config, taken
while no staff member is logged in, holds no tip content, no attachment, no
reply, no submitter detail, no IP address or User-Agent, and no key that
opens any of them. Everything here really commits, then the disk is searched.
"""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyotp
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import LargeBinary, select

import app.models  # noqa: F401
from app.auth.credentials import create_account
from app.auth.models import Role
from app.auth.second_factor import new_totp_secret
from app.crypto import sealing
from app.crypto.sealed_keys import sealed_data_keys
from app.entrypoints.apps import create_intake_app, create_staff_app
from app.entrypoints.organisation import init_organisation
from app.intake.models import MessageAuthor, Tip
from app.intake.service import add_message
from app.keys.grants import grant_intake_key
from app.kit.config import Settings
from app.kit.db import Base, Database
from app.kit.server_secrets import load_server_secrets
from tests.conftest import CHEAP_ARGON2


def encodings(text: str) -> list[bytes]:
    return [text.encode("utf-8"), text.encode("utf-16-le"), text.encode("utf-16-be")]


def files_under(root: Path) -> Iterator[Path]:
    yield from (path for path in root.rglob("*") if path.is_file())


def database_dump(database: Database) -> bytes:
    """Every value of every table, as bytes: what a database copy would hold."""
    dump = bytearray()
    with database.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            for row in connection.execute(select(table)):
                for column, value in zip(table.columns, row, strict=True):
                    if isinstance(column.type, LargeBinary) and value is not None:
                        dump += bytes(value)
                    else:
                        dump += str(value).encode("utf-8")
                    dump += b"\x00"
    return bytes(dump)


def opened_data_keys(database: Database, intake_private: sealing.PrivateKey) -> list[tuple[str, bytes]]:
    """Every data key sealed to the intake key, opened: the rows of each registered kind."""
    opened = []
    with database.transaction() as session:
        for kind in sealed_data_keys():
            # NULL: a file sent with its tip, under the tip's data key.
            sealed_rows = session.scalars(
                select(kind.model).where(kind.model.intake_key_version.is_not(None))
            )
            for row in sealed_rows:
                data_key = kind.contract.open(
                    intake_private,
                    row.sealed_data_key,
                    row_id=kind.row_id(row),
                    key_version=row.intake_key_version,
                )
                opened.append((f"{kind.name} data key", data_key))
    return opened


def test_a_seized_dormant_server_reveals_no_tip(data_dir: Path, committed_database_url: str | None) -> None:
    canary = secrets.token_hex(6)
    narrative = f"CANARY-NARRATIVE-{canary} my brother in Kashgar"
    city = f"CANARY-CITY-{canary}"
    reply = f"CANARY-REPLY-{canary}"
    answer = f"CANARY-ANSWER-{canary}"
    evidence = f"CANARY-FILE-{canary}".encode() * 5000
    file_name = f"CANARY-FILENAME-{canary}.jpg"
    spoofed_ip = "203.0.113.77"
    user_agent = f"CANARY-AGENT-{canary}"
    contact = f"CANARY-CONTACT-{canary} signal +31 6"
    later_file_name = f"CANARY-LATER-{canary}.pdf"
    later_evidence = f"CANARY-LATER-FILE-{canary}".encode() * 100

    settings = Settings(
        data_dir=data_dir,
        argon2=CHEAP_ARGON2,
        database_url=SecretStr(committed_database_url) if committed_database_url else None,
    )
    database = Database.from_settings(settings)
    organisation = init_organisation(settings, database)
    server_secrets = load_server_secrets(settings.secrets_dir)
    password, totp_secret = secrets.token_urlsafe(16), new_totp_secret()
    with database.transaction() as session:
        account, personal_private = create_account(
            session,
            username="caseworker",
            role=Role.CASEWORKER,
            password=password,
            totp_secret=totp_secret,
            settings=settings,
            server_secrets=server_secrets,
        )
        grant_intake_key(
            session,
            intake_key=organisation.intake_key,
            intake_private=organisation.intake_private,
            grantee=account,
            granted_by_id=None,
            key_integrity_key=server_secrets.key_integrity_key,
        )

    submitter_headers = {
        "x-forwarded-for": spoofed_ip,
        "x-real-ip": spoofed_ip,
        "user-agent": user_agent,
        "forwarded": f"for={spoofed_ip}",
    }
    with TestClient(create_intake_app(settings, database=database), base_url="https://intake") as intake:
        # The report form's last post, as a browser sends it, with a way to be reached.
        submitted = intake.post(
            "/report",
            headers=submitter_headers,
            data={
                "narrative": narrative,
                "host_city": city,
                "host_country": "CN",
                "tactics": ["family_pressure"],
                "contact_preference": "other_channel",
                "contact_details": contact,
                "step": "review",
            },
            files=[("files", (file_name, evidence, "image/jpeg"))],
        )
        assert submitted.status_code == 201
        found = re.search(r'<p class="receipt"[^>]*>(.*?)</p>', submitted.text, re.S)
        assert found is not None
        receipt = re.sub(r"<[^>]+>", "", found.group(1))
        assert (
            intake.post(
                "/api/v1/followup/messages",
                headers=submitter_headers,
                json={"receipt": receipt, "body": answer},
            ).status_code
            == 201
        )
        assert (
            intake.post(
                "/followup/files",
                headers=submitter_headers,
                data={"receipt": receipt},
                files=[("files", (later_file_name, later_evidence, "application/pdf"))],
            ).status_code
            == 201
        )

    with TestClient(create_staff_app(settings, database=database), base_url="https://staff") as staff:
        assert (
            staff.post(
                "/api/v1/auth/login",
                json={"username": "caseworker", "password": password, "otp": pyotp.TOTP(totp_secret).now()},
            ).status_code
            == 200
        )
        [item] = staff.get("/api/v1/tips").json()["items"]
        detail = staff.get(f"/api/v1/tips/{item['id']}").json()
        assert (detail["narrative"], detail["contact_details"]) == (narrative, contact)
        with database.transaction() as session:
            tip = session.get_one(Tip, uuid.UUID(item["id"]))
            add_message(session, tip, reply, author=MessageAuthor.STAFF, server_secrets=server_secrets)
        assert staff.post("/api/v1/auth/logout").status_code == 204

    # The receipt holder still reads the reply (so the canary is really stored somewhere, sealed).
    with TestClient(create_intake_app(settings, database=database), base_url="https://intake") as intake:
        view = intake.post("/api/v1/followup", json={"receipt": receipt}).json()
        assert [m["body"] for m in view["messages"]] == [None, reply]

    data_keys = opened_data_keys(database, organisation.intake_private)
    # The tip's, the answer's, the reply's and the later file's: each has its own.
    assert sorted(name for name, _ in data_keys) == [
        "files data key",
        "messages data key",
        "messages data key",
        "tips data key",
    ]
    dump = database_dump(database)
    database.engine.dispose()
    disk = b"".join(path.read_bytes() for path in files_under(data_dir))
    assert (data_dir / "daylight.sqlite3").exists() or committed_database_url
    assert len(list((data_dir / "blobs").iterdir())) == 2

    secrets_on_disk = [
        narrative,
        city,
        reply,
        answer,
        file_name,
        spoofed_ip,
        user_agent,
        receipt,
        receipt.replace("-", ""),
        password,
        totp_secret,
        contact,
        later_file_name,
    ]
    for haystack_name, haystack in (("disk", disk), ("database", dump)):
        for needle in secrets_on_disk:
            for encoded in encodings(needle):
                assert encoded not in haystack, f"{needle!r} found in {haystack_name}"
        assert evidence[:64] not in haystack
        assert later_evidence[:64] not in haystack
        # No key that opens content is stored in clear: not the intake private
        # key, not the member's personal key, not any data key sealed to the intake key.
        for key_name, key in (
            ("intake private key", organisation.intake_private.raw),
            ("personal private key", personal_private.raw),
            *data_keys,
        ):
            assert key not in haystack, f"{key_name} found in {haystack_name}"
            assert key[:16] not in haystack, f"part of the {key_name} found in {haystack_name}"
    assert organisation.recovery_key.encode() not in disk + dump
