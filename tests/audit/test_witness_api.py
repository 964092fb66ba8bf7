"""Witnesses over the staff API: who may register them, how they authenticate, what is kept.

On both databases. A witness's cosignature is kept only when it verifies under a witness an
admin registered through the server (a row written straight into the database is ignored and
flagged), and the auditor's page and `verify` say how far the log is witnessed.
"""

from __future__ import annotations

import base64
import datetime as dt
import time
import uuid

from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit_log.checkpoint import VerifierKey
from app.audit_log.cosignature import (
    generate_witness_signer,
    parse_witness_signer,
    parse_witness_verifier_key,
)
from app.audit_log.evidence import verify_event_proof
from app.audit_log.merkle import verify_consistency
from app.audit_log.models import AuditCosignature, AuditWitness
from app.audit_log.service import signing_key
from app.audit_log.witness import add_checkpoint
from app.auth.models import Role
from app.kit.config import Settings
from app.kit.server_secrets import ServerSecrets
from tests.audit_log.test_log import fill
from tests.auth.factories import login
from tests.conftest import Organisation

_LOGINS: dict[str, int] = {}


def sign_in(client: TestClient, organisation: Organisation, role: Role) -> None:
    """A fresh login each time, each with the next one-time code (a code is accepted once)."""
    member = organisation[role]
    step = _LOGINS.get(member.username, 0)
    _LOGINS[member.username] = step + 1
    client.cookies.clear()
    assert login(client, member, otp=member.otp(step)).status_code == 200


def register(client: TestClient, organisation: Organisation, name: str) -> tuple[dict[str, str], str]:
    sign_in(client, organisation, Role.ADMIN)
    private_text, verifier = generate_witness_signer(name)
    response = client.post("/api/v1/audit/witnesses", json={"verifier_key": verifier})
    assert response.status_code == 201, response.text
    client.cookies.clear()
    return response.json(), private_text


def witness_round(
    client: TestClient, token: str, private_text: str, log_key: VerifierKey, old: int = 0
) -> tuple[int, str]:
    bearer = {"authorization": f"Bearer {token}"}
    request = client.get(f"/api/v1/audit/witness/add-checkpoint?old={old}", headers=bearer)
    assert request.status_code == 200, request.text
    name, key = parse_witness_signer(private_text)
    state, line = add_checkpoint(None, request.text, log_key, key, name, int(time.time()))
    return state.tree_size, line


def test_witnesses_are_registered_by_admins_and_cosign_with_their_token(
    staff_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    fill(db_session, 4)
    db_session.commit()
    log_key = VerifierKey(settings.audit_log_origin, signing_key(server_secrets).public_key())

    # Only an admin registers; an auditor reads the list.
    sign_in(staff_client, organisation, Role.AUDITOR)
    _, verifier = generate_witness_signer("partner.example/witness")
    assert staff_client.post("/api/v1/audit/witnesses", json={"verifier_key": verifier}).status_code == 403
    assert staff_client.post("/api/v1/audit/checkpoints").status_code == 201
    witness, private_text = register(staff_client, organisation, "partner.example/witness")
    assert witness["token"].startswith("dlw_")
    assert (
        staff_client.post("/api/v1/audit/witnesses", json={"verifier_key": "not a key"}).status_code == 401
    ), "logged out: no anonymous registration"

    # Unknown or missing credentials get nothing; a signature line that is not the witness's is refused.
    assert staff_client.get("/api/v1/audit/witness/add-checkpoint").status_code == 401
    assert (
        staff_client.get(
            "/api/v1/audit/witness/add-checkpoint", headers={"authorization": "Bearer dlw_nope"}
        ).status_code
        == 401
    )
    size, line = witness_round(staff_client, witness["token"], private_text, log_key)
    bearer = {"authorization": f"Bearer {witness['token']}"}
    impostor_text, _ = generate_witness_signer("partner.example/witness")
    _, forged_line = witness_round(staff_client, witness["token"], impostor_text, log_key)
    refused = staff_client.post(
        "/api/v1/audit/witness/cosignatures",
        json={"tree_size": size, "cosignatures": forged_line},
        headers=bearer,
    )
    assert refused.status_code == 422
    kept = staff_client.post(
        "/api/v1/audit/witness/cosignatures", json={"tree_size": size, "cosignatures": line}, headers=bearer
    )
    assert kept.status_code == 201, kept.text
    assert kept.json()["cosigned_by"] == ["partner.example/witness"]

    # The auditor sees how far the log is witnessed, on the API and on the page.
    sign_in(staff_client, organisation, Role.AUDITOR)
    verdict = staff_client.get("/api/v1/audit/verify").json()
    assert verdict["ok"] is True
    assert verdict["witnessed_size"] == size
    listed = staff_client.get("/api/v1/audit/witnesses").json()["items"]
    assert [(w["name"], w["last_cosigned_size"], w["registration_valid"]) for w in listed] == [
        ("partner.example/witness", size, True)
    ]
    page = staff_client.get("/audit").text
    assert "partner.example/witness" in page
    assert "data-coverage" in page
    evidence = staff_client.get("/api/v1/audit/events/2/evidence").json()
    witness_key = parse_witness_verifier_key(listed[0]["verifier_key"])
    checked = verify_event_proof(evidence, log_key, [witness_key], 1)
    assert checked.ok, checked.problems
    assert checked.witnessed_by == ["partner.example/witness"]
    assert staff_client.get("/api/v1/audit/events/999/evidence").status_code == 404

    # A revoked witness's token opens nothing any more.
    sign_in(staff_client, organisation, Role.ADMIN)
    assert staff_client.delete(f"/api/v1/audit/witnesses/{witness['id']}").status_code == 204
    assert staff_client.get("/api/v1/audit/witness/add-checkpoint", headers=bearer).status_code == 401


def test_a_witness_written_into_the_database_is_ignored_and_flagged(
    staff_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    """Someone who can write the database adds their own witness key to make a forged log look
    witnessed: without the server's key-integrity key its registration does not verify."""
    fill(db_session, 3)
    db_session.commit()
    log_key = VerifierKey(settings.audit_log_origin, signing_key(server_secrets).public_key())
    sign_in(staff_client, organisation, Role.AUDITOR)
    assert staff_client.post("/api/v1/audit/checkpoints").status_code == 201
    witness, private_text = register(staff_client, organisation, "honest.example/w")
    rogue_text, rogue_verifier = generate_witness_signer("rogue.example/w")
    db_session.add(
        AuditWitness(
            id=uuid.uuid4(),
            name="rogue.example/w",
            verifier_key=rogue_verifier,
            token_hash=bytes(32),
            registration_mac=bytes(32),  # without the server's key, no valid MAC
            registered_at=dt.datetime.now(dt.UTC),
        )
    )
    db_session.commit()
    size, line = witness_round(staff_client, witness["token"], private_text, log_key)
    _, rogue_line = witness_round(staff_client, witness["token"], rogue_text, log_key)
    bearer = {"authorization": f"Bearer {witness['token']}"}
    response = staff_client.post(
        "/api/v1/audit/witness/cosignatures",
        json={"tree_size": size, "cosignatures": line + rogue_line},
        headers=bearer,
    )
    assert response.status_code == 201
    assert response.json()["cosigned_by"] == ["honest.example/w"], "the rogue line is not kept"
    assert db_session.scalar(select(func.count()).select_from(AuditCosignature)) == 1
    sign_in(staff_client, organisation, Role.AUDITOR)
    listed = {
        w["name"]: w["registration_valid"]
        for w in staff_client.get("/api/v1/audit/witnesses").json()["items"]
    }
    assert listed == {"honest.example/w": True, "rogue.example/w": False}
    assert "registration not made by this server" in staff_client.get("/audit").text


def test_consistency_proofs_between_any_two_signed_sizes(
    staff_client: TestClient, organisation: Organisation, db_session: Session
) -> None:
    sign_in(staff_client, organisation, Role.AUDITOR)
    fill(db_session, 5)
    db_session.commit()
    first = staff_client.post("/api/v1/audit/checkpoints").json()
    fill(db_session, 6, start=5)
    db_session.commit()
    second = staff_client.post("/api/v1/audit/checkpoints").json()
    proof = staff_client.get(
        "/api/v1/audit/consistency", params={"first": first["tree_size"], "second": second["tree_size"]}
    )
    assert proof.status_code == 200
    assert verify_consistency(
        first["tree_size"],
        second["tree_size"],
        bytes.fromhex(first["root"]),
        bytes.fromhex(second["root"]),
        [base64.b64decode(node) for node in proof.json()["proof"]],
    )
    beyond = staff_client.get(
        "/api/v1/audit/consistency", params={"first": 1, "second": second["tree_size"] + 5}
    )
    assert beyond.status_code == 404
    backwards = staff_client.get("/api/v1/audit/consistency", params={"first": 3, "second": 2})
    assert backwards.status_code == 404
