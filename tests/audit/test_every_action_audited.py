"""Every staff route that reads or changes protected data writes an audit event.

The route table is walked: each staff route must be classified below, as
audited (with the action its success records) or as not touching protected
data. Then each audited route is called successfully and its event checked.
"""

from __future__ import annotations

import datetime as dt
import re
import time
import uuid
from collections.abc import Callable

import pyotp
import pytest
from fastapi.testclient import TestClient
from httpx2 import Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit_log.checkpoint import VerifierKey
from app.audit_log.cosignature import generate_witness_signer, parse_witness_signer
from app.audit_log.models import AuditEvent, AuditWitness
from app.audit_log.service import signing_key
from app.audit_log.witness import add_checkpoint
from app.auth.models import Role
from app.auth.principal import Principal, UnlockedKeys
from app.cases import station_links as links
from app.cases.models import CaseMember
from app.crypto import sealing
from app.entrypoints.apps import STAFF_PUBLIC_ROUTES, create_staff_app
from app.entrypoints.demo import SEED_FILE
from app.intake.models import Tip, TipAttachment, TipStatus
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets
from app.referrals.keys import generate_recipient_key
from app.referrals.models import ReferralRecipient
from app.stations.models import Confidence, LinkRelation, Station
from tests.auth.factories import StaffMember, login, make_member
from tests.auth.factories import form_login as post_login_form
from tests.auth.soft_authenticator import SoftAuthenticator, options_from_page
from tests.conftest import Organisation
from tests.intake.factories import make_tip
from tests.support.confirmation import member_fingerprint
from tests.test_route_guards import route_table

AUDITED: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/tips/{tip_id}/claim"): "tip.claim",
    ("POST", "/api/v1/tips/{tip_id}/notes"): "tip.note",
    ("POST", "/api/v1/tips/{tip_id}/messages"): "tip.reply",
    ("POST", "/api/v1/tips/{tip_id}/verification"): "tip.verify_propose",
    ("GET", "/api/v1/tips/{tip_id}/duplicates"): "tip.duplicates",
    ("POST", "/api/v1/tips/{tip_id}/verification/confirm"): "tip.verify_confirm",
    ("POST", "/api/v1/tips/{tip_id}/assign"): "tip.assign",
    ("POST", "/api/v1/tips/{tip_id}/release"): "tip.release",
    ("POST", "/api/v1/tips/{tip_id}/reject"): "tip.reject",
    ("POST", "/api/v1/cases"): "case.create",
    ("GET", "/api/v1/cases"): "cases.list",
    ("GET", "/api/v1/cases/{case_id}"): "case.read",
    ("POST", "/api/v1/cases/{case_id}/tips"): "case.tip_add",
    ("POST", "/api/v1/cases/{case_id}/members"): "case.member_add",
    ("DELETE", "/api/v1/cases/{case_id}/members/{account_id}"): "case.member_remove",
    ("POST", "/api/v1/cases/{case_id}/status"): "case.status",
    ("POST", "/api/v1/cases/{case_id}/restriction"): "case.restrict",
    ("POST", "/api/v1/cases/{case_id}/notes"): "case.note",
    ("POST", "/tips/{tip_id}/{action}"): "tip.claim",
    ("GET", "/cases"): "cases.list",
    ("GET", "/cases/new"): "tips.list",
    ("POST", "/cases"): "case.create",
    ("GET", "/cases/{case_id}"): "case.read",
    ("POST", "/cases/{case_id}/{action}"): "case.note",
    ("POST", "/api/v1/labels"): "label.create",
    ("POST", "/labels"): "label.create",
    ("GET", "/api/v1/labels"): "labels.list",
    ("GET", "/labels"): "labels.list",
    ("POST", "/api/v1/tips/{tip_id}/labels"): "tip.label",
    ("DELETE", "/api/v1/tips/{tip_id}/labels/{label_id}"): "tip.unlabel",
    ("POST", "/tips/{tip_id}/labels"): "tip.label",
    ("POST", "/api/v1/cases/{case_id}/labels"): "case.label",
    ("DELETE", "/api/v1/cases/{case_id}/labels/{label_id}"): "case.unlabel",
    ("POST", "/cases/{case_id}/labels"): "case.label",
    ("POST", "/api/v1/labels/{label_id}/retire"): "label.retire",
    ("POST", "/labels/{label_id}/retire"): "label.retire",
    ("POST", "/api/v1/stations/import"): "stations.import",
    ("GET", "/api/v1/stations/export"): "stations.export",
    ("POST", "/api/v1/cases/{case_id}/stations"): "case.station_link_propose",
    ("POST", "/api/v1/cases/{case_id}/stations/{link_id}/confirm"): "case.station_link_confirm",
    ("POST", "/stations/import"): "stations.import",
    ("GET", "/statistics.csv"): "statistics.export",
    ("POST", "/api/v1/auth/login"): "auth.login",
    ("POST", "/login"): "auth.login",
    ("POST", "/api/v1/auth/logout"): "auth.logout",
    ("POST", "/logout"): "auth.logout",
    ("POST", "/api/v1/auth/logout-everywhere"): "auth.logout_everywhere",
    ("POST", "/account/logout-everywhere"): "auth.logout_everywhere",
    ("POST", "/api/v1/auth/step-up"): "auth.step_up",
    ("POST", "/account/step-up"): "auth.step_up",
    ("POST", "/api/v1/auth/password"): "auth.password_change",
    ("POST", "/account/password"): "auth.password_change",
    ("POST", "/api/v1/accounts"): "account.create",
    ("POST", "/admin/accounts"): "account.create",
    ("PATCH", "/api/v1/accounts/{account_id}"): "account.update",
    ("POST", "/admin/accounts/{account_id}"): "account.update",
    ("POST", "/api/v1/accounts/{account_id}/reset-password"): "account.link_issued",
    ("POST", "/admin/accounts/{account_id}/reset-password"): "account.link_issued",
    ("POST", "/api/v1/accounts/{account_id}/reset-2fa"): "account.link_issued",
    ("POST", "/admin/accounts/{account_id}/reset-2fa"): "account.link_issued",
    ("POST", "/api/v1/account-links/{token}"): "account.link_completed",
    ("POST", "/link/{token}"): "account.link_completed",
    ("POST", "/api/v1/accounts/{account_id}/confirm"): "account.confirm",
    ("POST", "/keys/confirm/{account_id}"): "account.confirm",
    ("PUT", "/api/v1/key-grants/{account_id}"): "key.grant",
    ("DELETE", "/api/v1/key-grants/{account_id}"): "key.revoke",
    ("POST", "/keys/{account_id}/{action}"): "key.grant",
    ("GET", "/api/v1/tips"): "tips.list",
    ("GET", "/tips"): "tips.list",
    ("GET", "/api/v1/tips/{tip_id}"): "tip.read",
    ("GET", "/tips/{tip_id}"): "tip.read",
    ("GET", "/api/v1/tips/{tip_id}/attachments/{attachment_id}"): "tip.attachment_download",
    ("GET", "/api/v1/audit/verify"): "audit.verify",
    ("POST", "/audit/verify"): "audit.verify",
    ("POST", "/api/v1/audit/checkpoints"): "audit.checkpoint",
    ("POST", "/audit/checkpoint"): "audit.checkpoint",
    ("GET", "/api/v1/audit/export"): "audit.export",
    ("POST", "/api/v1/audit/witnesses"): "audit.witness_add",
    ("POST", "/api/v1/audit/witness/cosignatures"): "audit.cosign",
    ("DELETE", "/api/v1/audit/witnesses/{witness_id}"): "audit.witness_revoke",
    ("POST", "/admin/witnesses"): "audit.witness_add",
    ("POST", "/admin/witnesses/{witness_id}/revoke"): "audit.witness_revoke",
    ("POST", "/account/passkeys"): "auth.passkey_enrol",
    ("POST", "/account/passkeys/{passkey_id}/revoke"): "auth.passkey_revoke",
    ("POST", "/admin/login-policy"): "auth.login_policy",
    ("POST", "/admin/review-policy"): "organisation.review_policy",
    ("POST", "/account/notifications"): "notify.preferences",
    ("POST", "/admin/notifications"): "notify.settings",
    ("POST", "/api/v1/tips/bulk"): "tips.bulk",
    ("POST", "/tips/bulk"): "tips.bulk",
    ("POST", "/views"): "view.save",
    ("POST", "/views/{view_id}/delete"): "view.delete",
    ("POST", "/referrals/recipients"): "referral_recipient.add",
    ("GET", "/referrals/recipients"): "referral_recipients.list",
    ("POST", "/referrals/recipients/{recipient_id}/confirm"): "referral_recipient.confirm",
    ("POST", "/referrals/recipients/{recipient_id}/retire"): "referral_recipient.retire",
    ("GET", "/cases/{case_id}/referrals/new"): "case.read",
    ("POST", "/cases/{case_id}/referrals"): "referral.propose",
    ("GET", "/cases/{case_id}/referrals"): "case.read",
    ("GET", "/referrals/{referral_id}"): "referral.read",
    ("POST", "/referrals/{referral_id}/approve"): "referral.approve",
    ("GET", "/referrals/{referral_id}/bundle"): "referral.download",
    ("POST", "/referrals/{referral_id}/revoke"): "referral.revoke",
}
# Routes that read or change no protected data: each with the reason.
NOT_AUDITED: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/stations"): "the public, sourced registry: no case data",
    ("GET", "/stations"): "the registry page; counts of cases the viewer may see, no content",
    ("GET", "/stations/{station_id}"): "a registry entry; counts of cases the viewer may see, no content",
    ("GET", "/stations/map"): "the registry on a map; counts only",
    ("GET", "/statistics"): "charts of counts on screen; the printable report (?print=1) is audited",
    ("GET", "/healthz"): "liveness only",
    ("GET", "/readyz"): "readiness only: whether the database answers",
    ("GET", "/"): "a redirect to the role's start page",
    ("GET", "/login"): "the empty login form",
    ("GET", "/link/{token}"): "shows the link's own enrolment secret to its holder; completing it is audited",
    ("GET", "/api/v1/account-links/{token}"): "as GET /link/{token}",
    ("GET", "/api/v1/auth/session"): "the caller's own session",
    ("GET", "/api/v1/auth/sessions"): "the caller's own sessions",
    ("GET", "/account"): "the caller's own account page",
    ("GET", "/account/notifications"): "the caller's own notice preferences",
    ("GET", "/admin/notifications"): "the notice channels and the delivery backlog (no content)",
    ("GET", "/api/v1/accounts"): "account metadata for admins; changes are audited",
    ("GET", "/api/v1/accounts/{account_id}"): "as GET /api/v1/accounts",
    ("GET", "/admin/accounts"): "as GET /api/v1/accounts",
    ("GET", "/admin/accounts/{account_id}"): "as GET /api/v1/accounts",
    ("GET", "/api/v1/key-grants"): "who holds the key; grants and revocations are audited",
    ("GET", "/keys"): "as GET /api/v1/key-grants",
    (
        "GET",
        "/api/v1/audit/events",
    ): "reading actions, never content; the auditor's own trail is verify/export",
    ("GET", "/audit"): "as GET /api/v1/audit/events",
    ("GET", "/api/v1/audit/checkpoint"): "a public commitment",
    ("GET", "/api/v1/audit/events/{seq}/proof"): "a proof over public commitments",
    ("GET", "/api/v1/audit/consistency"): "a proof over public commitments",
    ("GET", "/api/v1/audit/events/{seq}/evidence"): "a proof over public commitments",
    ("GET", "/api/v1/audit/witness/add-checkpoint"): "a public commitment and its proof",
    ("GET", "/api/v1/audit/witnesses"): "the witnesses' public keys; changes are audited",
    ("GET", "/admin/witnesses"): "as GET /api/v1/audit/witnesses",
    ("GET", "/admin/login-policy"): "the organisation's second-factor policy and a count, no member data",
    ("GET", "/admin/review-policy"): "the organisation's review policy and whether it has a single lead",
}


def test_every_staff_route_is_classified(settings: Settings) -> None:
    staff = create_staff_app(settings, database=Database.from_settings(settings))
    routes = set(route_table(staff))
    assert routes == set(AUDITED) | set(NOT_AUDITED), routes ^ (set(AUDITED) | set(NOT_AUDITED))
    assert not set(AUDITED) & set(NOT_AUDITED)
    assert set(STAFF_PUBLIC_ROUTES) <= routes


class Scenario:
    """Calls each audited route once, successfully, as a member allowed to."""

    def __init__(
        self,
        client: TestClient,
        organisation: Organisation,
        db_session: Session,
        settings: Settings,
        server_secrets: ServerSecrets,
    ) -> None:
        self.client, self.org, self.db = client, organisation, db_session
        self.settings, self.secrets = settings, server_secrets
        self.steps: dict[str, int] = {}
        tip_id, _ = make_tip(db_session, server_secrets)
        self.tip_id = tip_id
        self.second_tip_id, _ = make_tip(db_session, server_secrets)
        self.verified_tip_id, _ = make_tip(db_session, server_secrets)
        db_session.get_one(Tip, self.verified_tip_id).status = TipStatus.VERIFIED
        self.case_id: str | None = None
        self.open_tip_id, _ = make_tip(db_session, server_secrets)
        self.target = make_member(db_session, settings, server_secrets, Role.CASEWORKER)
        # Members invited by link_token, in order: each awaits a lead's confirmation once active.
        self.invited: list[str] = []
        db_session.commit()

    def as_(self, role: Role) -> StaffMember:
        member = self.org[role]
        session = self.client.get("/api/v1/auth/session")
        if session.status_code == 200 and session.json()["role"] == role.value:
            return member
        step = self.steps.get(member.username, -1)
        self.steps[member.username] = step + 1
        assert step <= 1, "three logins per member per test at most"
        self.client.cookies.clear()
        assert login(self.client, member, otp=member.otp(step)).status_code == 200
        return member

    def new_member(self, role: Role) -> StaffMember:
        member = make_member(self.db, self.settings, self.secrets, role)
        self.db.commit()
        self.client.cookies.clear()
        return member

    def fresh(self, role: Role) -> StaffMember:
        """A new member, signed in: for routes that end their session."""
        member = make_member(self.db, self.settings, self.secrets, role)
        self.db.commit()
        self.last_fresh = member
        self.client.cookies.clear()
        assert login(self.client, member).status_code == 200
        return member

    def station_id(self) -> str:
        station = self.db.scalars(select(Station).order_by(Station.city)).first()
        assert station is not None
        return str(station.id)

    def propose_link(self) -> Response:
        return self.client.post(
            f"/api/v1/cases/{self.case_id}/stations",
            json={
                "station_id": self.station_id(),
                "relation": "suspected",
                "confidence": "medium",
                "evidence": "Same phone number.",
            },
        )

    def link_proposed_by_caseworker(self) -> str:
        """A link the caseworker proposed (through the service): the lead, another member, confirms it."""
        caseworker = self.org[Role.CASEWORKER].account
        if (
            self.db.get(CaseMember, {"case_id": uuid.UUID(str(self.case_id)), "account_id": caseworker.id})
            is None
        ):
            self.db.add(CaseMember(case_id=uuid.UUID(str(self.case_id)), account_id=caseworker.id))
        principal = Principal(
            account_id=caseworker.id,
            username=caseworker.username,
            role=Role.CASEWORKER,
            session_id=uuid.uuid4(),
            keys=UnlockedKeys(personal=sealing.generate_private_key(), intake={1: self.org.intake.private}),
            reauthenticated_at=dt.datetime.now(dt.UTC),
            csrf_token="",
        )
        link = links.propose_link(
            self.db,
            principal,
            uuid.UUID(str(self.case_id)),
            uuid.UUID(self.station_id()),
            LinkRelation.OPERATED_BY,
            Confidence.LOW,
            "",
        )
        self.db.commit()
        return str(link.id)

    def create_case(self) -> Response:
        response = self.client.post(
            "/api/v1/cases", json={"title": "Station visits", "tip_ids": [str(self.tip_id)]}
        )
        self.case_id = response.json().get("id")
        return response

    def register_witness(self) -> Response:
        self.as_(Role.ADMIN)
        self.witness_key_text, verifier = generate_witness_signer("witness.example/w1")
        response = self.client.post("/api/v1/audit/witnesses", json={"verifier_key": verifier})
        self.witness = response.json()
        return response

    def witness_named(self, name: str) -> str:
        return str(self.db.scalars(select(AuditWitness.id).where(AuditWitness.name == name)).one())

    def cosign_as_witness(self) -> Response:
        """As `daylight audit witness` does it, with the witness's bearer token."""
        bearer = {"authorization": f"Bearer {self.witness['token']}"}
        request = self.client.get("/api/v1/audit/witness/add-checkpoint?old=0", headers=bearer)
        assert request.status_code == 200, request.text
        name, private_key = parse_witness_signer(self.witness_key_text)
        log_key = VerifierKey(self.settings.audit_log_origin, signing_key(self.secrets).public_key())
        state, line = add_checkpoint(None, request.text, log_key, private_key, name, int(time.time()))
        return self.client.post(
            "/api/v1/audit/witness/cosignatures",
            json={"tree_size": state.tree_size, "cosignatures": line},
            headers=bearer,
        )

    def enrol_passkey(self) -> Response:
        self.fresh(Role.CASEWORKER)
        options = options_from_page(self.client.get("/account").text)
        response = SoftAuthenticator(origin="https://testserver", rp_id="testserver").create(options)
        return self.client.post(
            "/account/passkeys",
            data={"csrf_token": self.csrf(), "name": "office key", "passkey_response": response},
        )

    def revoke_passkey(self) -> Response:
        [passkey_id] = re.findall(
            r'action="/account/passkeys/([0-9a-f-]+)/revoke"', self.client.get("/account").text
        )
        return self.client.post(f"/account/passkeys/{passkey_id}/revoke", data={"csrf_token": self.csrf()})

    def csrf(self, page: str = "/account") -> str:
        match = re.search(r'name="csrf_token" value="([^"]+)"', self.client.get(page).text)
        assert match
        return match.group(1)

    def link_token(self) -> str:
        self.as_(Role.ADMIN)
        created = self.client.post(
            "/api/v1/accounts", json={"username": f"m{uuid.uuid4().hex[:8]}", "role": "lead"}
        )
        self.invited.append(created.json()["account_id"])
        return str(created.json()["link_path"]).removeprefix("/link/")

    def complete(self, token: str, api: bool) -> Response:
        self.client.cookies.clear()
        secret = self.client.get(f"/api/v1/account-links/{token}").json()["totp_secret"]
        body = {"otp": pyotp.TOTP(secret).now(), "new_password": "a perfectly fine passphrase"}
        if api:
            return self.client.post(f"/api/v1/account-links/{token}", json=body)
        return self.client.post(f"/link/{token}", data=body)

    def confirm_invited(self, api: bool) -> Response:
        """A lead confirms the key pair of the earliest invited member who activated."""
        account_id = self.invited.pop(0)
        self.as_(Role.LEAD)
        fingerprint = member_fingerprint(self.db, uuid.UUID(account_id))
        if api:
            return self.client.post(
                f"/api/v1/accounts/{account_id}/confirm", json={"fingerprint": fingerprint}
            )
        return self.client.post(
            f"/keys/confirm/{account_id}",
            data={"csrf_token": self.csrf("/keys"), "fingerprint": fingerprint},
            follow_redirects=False,
        )


def form_login(client: TestClient, member: StaffMember) -> Response:
    return post_login_form(client, member)


class ReferralRoutes:
    """The referral routes in the order a referral goes, by two leads of their own holding the key
    (the organisation's lead has signed in as often as its one-time codes allow): one adds the
    recipients, the other confirms a key and proposes, the first approves, downloads and revokes."""

    def __init__(self, s: Scenario) -> None:
        self.s = s
        self.adder = make_member(s.db, s.settings, s.secrets, Role.LEAD, grant=s.org.intake)
        self.proposer = make_member(s.db, s.settings, s.secrets, Role.LEAD, grant=s.org.intake)
        self.logins: dict[str, int] = {}
        self.recipients: list[str] = []
        self.fingerprints: list[str] = []
        self.referral_id = self.case_id = ""
        tip_id, _ = make_tip(
            s.db, s.secrets, referral_consent="partners_only", referral_form="as_sent", narrative="Shared."
        )
        s.db.get_one(Tip, tip_id).status = TipStatus.VERIFIED
        s.db.commit()
        self.tip_id = tip_id

    def sign_in(self, member: StaffMember) -> None:
        session = self.s.client.get("/api/v1/auth/session")
        if session.status_code == 200 and session.json()["username"] == member.username:
            return
        self.s.client.cookies.clear()
        step = self.logins.get(member.username, 0)
        self.logins[member.username] = step + 1
        assert login(self.s.client, member, otp=member.otp(step)).status_code == 200

    def add(self, name: str) -> Response:
        self.sign_in(self.adder)
        _, public_text = generate_recipient_key(name)
        response = self.s.client.post(
            "/referrals/recipients",
            data={
                "csrf_token": self.s.csrf("/referrals/recipients"),
                "name": name,
                "contact": "",
                "kind": "partner",
                "public_key": public_text,
            },
            follow_redirects=False,
        )
        known = set(self.recipients)
        [added] = [
            recipient
            for recipient in self.s.db.scalars(select(ReferralRecipient))
            if str(recipient.id) not in known
        ]
        self.recipients.append(str(added.id))
        self.fingerprints.append(added.fingerprint)
        return response

    def retire(self) -> Response:
        self.add("Retired partner")
        return self.s.client.post(
            f"/referrals/recipients/{self.recipients[-1]}/retire",
            data={"csrf_token": self.s.csrf("/referrals/recipients")},
            follow_redirects=False,
        )

    def confirm(self) -> Response:
        self.sign_in(self.proposer)
        return self.s.client.post(
            f"/referrals/recipients/{self.recipients[0]}/confirm",
            data={"csrf_token": self.s.csrf("/referrals/recipients"), "fingerprint": self.fingerprints[0]},
            follow_redirects=False,
        )

    def new_page(self) -> Response:
        self.sign_in(self.proposer)
        created = self.s.client.post(
            "/api/v1/cases", json={"title": "Referred", "tip_ids": [str(self.tip_id)]}
        )
        self.case_id = created.json()["id"]
        return self.s.client.get(f"/cases/{self.case_id}/referrals/new")

    def propose(self) -> Response:
        self.sign_in(self.proposer)
        response = self.s.client.post(
            f"/cases/{self.case_id}/referrals",
            data={
                "csrf_token": self.s.csrf(f"/cases/{self.case_id}/referrals/new"),
                "recipient": self.recipients[0],
                "report": str(self.tip_id),
                f"{self.tip_id}.field": ["answers", "narrative"],
            },
            follow_redirects=False,
        )
        self.referral_id = response.headers["location"].removeprefix("/referrals/")
        return response

    def approve(self) -> Response:
        self.sign_in(self.adder)
        return self.s.client.post(
            f"/referrals/{self.referral_id}/approve",
            data={"csrf_token": self.s.csrf(f"/referrals/{self.referral_id}")},
            follow_redirects=False,
        )

    def download(self) -> Response:
        return self.s.client.get(f"/referrals/{self.referral_id}/bundle")

    def revoke(self) -> Response:
        response = self.s.client.post(
            f"/referrals/{self.referral_id}/revoke",
            data={"csrf_token": self.s.csrf(f"/referrals/{self.referral_id}")},
            follow_redirects=False,
        )
        self.s.client.cookies.clear()  # the next as_() signs the organisation's member in again
        return response


def referral_recipes(s: Scenario) -> dict[tuple[str, str], Callable[[], Response]]:
    referrals = ReferralRoutes(s)
    return {
        ("POST", "/referrals/recipients"): lambda: referrals.add("Partner organisation"),
        ("GET", "/referrals/recipients"): lambda: s.client.get("/referrals/recipients"),
        ("POST", "/referrals/recipients/{recipient_id}/retire"): referrals.retire,
        ("POST", "/referrals/recipients/{recipient_id}/confirm"): referrals.confirm,
        ("GET", "/cases/{case_id}/referrals/new"): referrals.new_page,
        ("POST", "/cases/{case_id}/referrals"): referrals.propose,
        ("GET", "/cases/{case_id}/referrals"): lambda: s.client.get(f"/cases/{referrals.case_id}/referrals"),
        ("GET", "/referrals/{referral_id}"): lambda: s.client.get(f"/referrals/{referrals.referral_id}"),
        ("POST", "/referrals/{referral_id}/approve"): referrals.approve,
        ("GET", "/referrals/{referral_id}/bundle"): referrals.download,
        ("POST", "/referrals/{referral_id}/revoke"): referrals.revoke,
    }


def recipes(s: Scenario) -> dict[tuple[str, str], Callable[[], Response]]:
    target = s.target.account.id

    def attachment() -> Response:
        attachment_row = s.db.scalars(select(TipAttachment)).first()
        assert attachment_row is not None
        s.as_(Role.CASEWORKER)
        return s.client.get(f"/api/v1/tips/{attachment_row.tip_id}/attachments/{attachment_row.id}")

    # Labels, by the lead: one made by the API is put on and taken off, one made by form retired.
    labels: dict[str, str] = {}

    def create_label_by_api() -> Response:
        s.as_(Role.LEAD)
        response = s.client.post("/api/v1/labels", json={"name": "Audited by API"})
        labels["api"] = str(response.json().get("id"))
        return response

    def create_label_by_form() -> Response:
        response = s.client.post(
            "/labels",
            data={"csrf_token": s.csrf("/labels"), "name": "Audited by form"},
            follow_redirects=False,
        )
        listed = s.client.get("/api/v1/labels").json()
        [made] = [label for label in listed if label["name"] == "Audited by form"]
        labels["form"] = made["id"]
        return response

    # The desk: bulk steps on reports made for them, a saved view made and deleted, by the lead.
    views: dict[str, str] = {}

    def bulk_by_api() -> Response:
        tip_id, _ = make_tip(s.db, s.secrets)
        s.db.commit()
        s.as_(Role.LEAD)
        return s.client.post("/api/v1/tips/bulk", json={"action": "claim", "tip_ids": [str(tip_id)]})

    def bulk_by_form() -> Response:
        tip_id, _ = make_tip(s.db, s.secrets)
        s.db.commit()
        s.as_(Role.LEAD)
        return s.client.post(
            "/tips/bulk",
            data={"csrf_token": s.csrf(), "action": "claim", "tip_id": [str(tip_id)]},
            follow_redirects=False,
        )

    def save_view() -> Response:
        s.as_(Role.LEAD)
        response = s.client.post(
            "/views",
            data={"csrf_token": s.csrf(), "name": "Urgent ones", "q_urgent": "true"},
            follow_redirects=False,
        )
        views["id"] = response.headers.get("location", "").rpartition("view=")[2]
        return response

    return {
        ("POST", "/api/v1/tips/bulk"): bulk_by_api,
        ("POST", "/tips/bulk"): bulk_by_form,
        ("POST", "/views"): save_view,
        ("POST", "/views/{view_id}/delete"): lambda: s.client.post(
            f"/views/{views['id']}/delete", data={"csrf_token": s.csrf()}, follow_redirects=False
        ),
        ("POST", "/api/v1/auth/login"): lambda: login(s.client, s.new_member(Role.LEAD)),
        ("POST", "/login"): lambda: form_login(s.client, s.new_member(Role.LEAD)),
        ("POST", "/api/v1/auth/logout"): lambda: (s.fresh(Role.LEAD), s.client.post("/api/v1/auth/logout"))[
            1
        ],
        ("POST", "/logout"): lambda: (
            s.fresh(Role.LEAD),
            s.client.post("/logout", data={"csrf_token": s.csrf()}, follow_redirects=False),
        )[1],
        ("POST", "/api/v1/auth/logout-everywhere"): lambda: (
            s.fresh(Role.AUDITOR),
            s.client.post("/api/v1/auth/logout-everywhere"),
        )[1],
        ("POST", "/account/logout-everywhere"): lambda: (
            s.fresh(Role.ADMIN),
            s.client.post(
                "/account/logout-everywhere", data={"csrf_token": s.csrf()}, follow_redirects=False
            ),
        )[1],
        ("POST", "/api/v1/auth/step-up"): lambda: (
            s.as_(Role.CASEWORKER),
            s.client.post("/api/v1/auth/step-up", json={"password": s.org[Role.CASEWORKER].password}),
        )[1],
        ("POST", "/account/step-up"): lambda: s.client.post(
            "/account/step-up",
            data={"csrf_token": s.csrf(), "password": s.org[Role.CASEWORKER].password},
            follow_redirects=False,
        ),
        ("POST", "/api/v1/auth/password"): lambda: (
            s.fresh(Role.CASEWORKER),
            s.client.post(
                "/api/v1/auth/password",
                json={"current_password": s.last_fresh.password, "new_password": "another fine passphrase"},
            ),
        )[1],
        ("POST", "/account/password"): lambda: s.client.post(
            "/account/password",
            data={
                "csrf_token": s.csrf(),
                "current_password": "another fine passphrase",
                "new_password": "a third fine passphrase",
            },
            follow_redirects=False,
        ),
        ("POST", "/api/v1/accounts"): lambda: (
            s.as_(Role.ADMIN),
            s.client.post("/api/v1/accounts", json={"username": "audited.one", "role": "caseworker"}),
        )[1],
        ("POST", "/admin/accounts"): lambda: s.client.post(
            "/admin/accounts",
            data={"csrf_token": s.csrf("/admin/accounts"), "username": "audited.two", "role": "lead"},
        ),
        ("PATCH", "/api/v1/accounts/{account_id}"): lambda: s.client.patch(
            f"/api/v1/accounts/{target}", json={"role": "lead"}
        ),
        ("POST", "/admin/accounts/{account_id}"): lambda: s.client.post(
            f"/admin/accounts/{target}",
            data={"csrf_token": s.csrf("/admin/accounts"), "role": "caseworker"},
            follow_redirects=False,
        ),
        ("POST", "/api/v1/accounts/{account_id}/reset-password"): lambda: s.client.post(
            f"/api/v1/accounts/{target}/reset-password"
        ),
        ("POST", "/admin/accounts/{account_id}/reset-password"): lambda: s.client.post(
            f"/admin/accounts/{target}/reset-password", data={"csrf_token": s.csrf("/admin/accounts")}
        ),
        ("POST", "/api/v1/accounts/{account_id}/reset-2fa"): lambda: s.client.post(
            f"/api/v1/accounts/{target}/reset-2fa"
        ),
        ("POST", "/admin/accounts/{account_id}/reset-2fa"): lambda: s.client.post(
            f"/admin/accounts/{target}/reset-2fa", data={"csrf_token": s.csrf("/admin/accounts")}
        ),
        ("POST", "/api/v1/account-links/{token}"): lambda: s.complete(s.link_token(), api=True),
        ("POST", "/link/{token}"): lambda: s.complete(s.link_token(), api=False),
        # The two members just activated, each confirmed by a lead.
        ("POST", "/api/v1/accounts/{account_id}/confirm"): lambda: s.confirm_invited(api=True),
        ("POST", "/keys/confirm/{account_id}"): lambda: s.confirm_invited(api=False),
        ("PUT", "/api/v1/key-grants/{account_id}"): lambda: (
            s.as_(Role.LEAD),
            s.client.put(f"/api/v1/key-grants/{s.org[Role.CASEWORKER].account.id}"),
        )[1],
        ("DELETE", "/api/v1/key-grants/{account_id}"): lambda: s.client.delete(
            f"/api/v1/key-grants/{s.org[Role.CASEWORKER].account.id}"
        ),
        ("POST", "/keys/{account_id}/{action}"): lambda: s.client.post(
            f"/keys/{s.org[Role.CASEWORKER].account.id}/grant",
            data={"csrf_token": s.csrf("/keys")},
            follow_redirects=False,
        ),
        ("GET", "/api/v1/tips"): lambda: s.client.get("/api/v1/tips"),
        ("GET", "/tips"): lambda: s.client.get("/tips"),
        ("GET", "/api/v1/tips/{tip_id}"): lambda: s.client.get(f"/api/v1/tips/{s.tip_id}"),
        ("GET", "/tips/{tip_id}"): lambda: s.client.get(f"/tips/{s.tip_id}"),
        ("GET", "/api/v1/tips/{tip_id}/attachments/{attachment_id}"): attachment,
        # The workflow, in an order the lifecycle allows: the caseworker works the first tip,
        # a lead confirms it and handles the second.
        ("POST", "/api/v1/tips/{tip_id}/claim"): lambda: s.client.post(f"/api/v1/tips/{s.tip_id}/claim"),
        ("POST", "/api/v1/tips/{tip_id}/notes"): lambda: s.client.post(
            f"/api/v1/tips/{s.tip_id}/notes", json={"body": "Called the partner organisation."}
        ),
        ("POST", "/api/v1/tips/{tip_id}/messages"): lambda: s.client.post(
            f"/api/v1/tips/{s.tip_id}/messages", json={"body": "Thank you, we are looking into it."}
        ),
        ("POST", "/api/v1/tips/{tip_id}/verification"): lambda: s.client.post(
            f"/api/v1/tips/{s.tip_id}/verification"
        ),
        ("GET", "/api/v1/tips/{tip_id}/duplicates"): lambda: s.client.get(
            f"/api/v1/tips/{s.tip_id}/duplicates"
        ),
        ("POST", "/api/v1/tips/{tip_id}/verification/confirm"): lambda: (
            s.as_(Role.LEAD),
            s.client.post(f"/api/v1/tips/{s.tip_id}/verification/confirm"),
        )[1],
        ("POST", "/api/v1/tips/{tip_id}/assign"): lambda: s.client.post(
            f"/api/v1/tips/{s.second_tip_id}/assign",
            json={"assignee_id": str(s.org[Role.CASEWORKER].account.id)},
        ),
        ("POST", "/api/v1/tips/{tip_id}/release"): lambda: s.client.post(
            f"/api/v1/tips/{s.second_tip_id}/release"
        ),
        ("POST", "/api/v1/tips/{tip_id}/reject"): lambda: s.client.post(
            f"/api/v1/tips/{s.second_tip_id}/reject", json={"reason": "spam"}
        ),
        # Cases, by the lead, from the tip verified above.
        ("POST", "/api/v1/cases"): s.create_case,
        ("GET", "/api/v1/cases"): lambda: s.client.get("/api/v1/cases"),
        ("GET", "/api/v1/cases/{case_id}"): lambda: s.client.get(f"/api/v1/cases/{s.case_id}"),
        ("POST", "/api/v1/cases/{case_id}/tips"): lambda: s.client.post(
            f"/api/v1/cases/{s.case_id}/tips", json={"tip_id": str(s.verified_tip_id)}
        ),
        ("POST", "/api/v1/cases/{case_id}/members"): lambda: s.client.post(
            f"/api/v1/cases/{s.case_id}/members", json={"account_id": str(s.org[Role.CASEWORKER].account.id)}
        ),
        ("DELETE", "/api/v1/cases/{case_id}/members/{account_id}"): lambda: s.client.delete(
            f"/api/v1/cases/{s.case_id}/members/{s.org[Role.CASEWORKER].account.id}"
        ),
        ("POST", "/api/v1/cases/{case_id}/status"): lambda: s.client.post(
            f"/api/v1/cases/{s.case_id}/status", json={"status": "investigating"}
        ),
        ("POST", "/api/v1/cases/{case_id}/restriction"): lambda: s.client.post(
            f"/api/v1/cases/{s.case_id}/restriction", json={"restricted": True}
        ),
        ("POST", "/api/v1/cases/{case_id}/notes"): lambda: s.client.post(
            f"/api/v1/cases/{s.case_id}/notes", json={"body": "Referred to the partner desk."}
        ),
        # The same through the staff UI's forms.
        ("POST", "/tips/{tip_id}/{action}"): lambda: s.client.post(
            f"/tips/{s.open_tip_id}/claim", data={"csrf_token": s.csrf()}, follow_redirects=False
        ),
        ("GET", "/cases"): lambda: s.client.get("/cases"),
        ("GET", "/cases/new"): lambda: s.client.get("/cases/new"),
        ("POST", "/cases"): lambda: s.client.post(
            "/cases",
            data={"csrf_token": s.csrf(), "title": "By form", "tip_ids": [str(s.verified_tip_id)]},
            follow_redirects=False,
        ),
        ("GET", "/cases/{case_id}"): lambda: s.client.get(f"/cases/{s.case_id}"),
        ("POST", "/api/v1/stations/import"): lambda: s.client.post(
            "/api/v1/stations/import?apply=true",
            headers={"content-type": "text/csv"},
            content=SEED_FILE.read_bytes(),
        ),
        ("GET", "/api/v1/stations/export"): lambda: s.client.get("/api/v1/stations/export"),
        ("POST", "/api/v1/cases/{case_id}/stations"): s.propose_link,
        ("POST", "/api/v1/cases/{case_id}/stations/{link_id}/confirm"): lambda: s.client.post(
            f"/api/v1/cases/{s.case_id}/stations/{s.link_proposed_by_caseworker()}/confirm"
        ),
        ("POST", "/stations/import"): lambda: s.client.post(
            "/stations/import",
            data={"csrf_token": s.csrf(), "content": SEED_FILE.read_text(), "apply": "yes"},
        ),
        ("GET", "/statistics.csv"): lambda: s.client.get("/statistics.csv"),
        ("POST", "/cases/{case_id}/{action}"): lambda: s.client.post(
            f"/cases/{s.case_id}/note",
            data={"csrf_token": s.csrf(), "body": "By form."},
            follow_redirects=False,
        ),
        ("POST", "/api/v1/labels"): create_label_by_api,
        ("POST", "/labels"): create_label_by_form,
        ("GET", "/api/v1/labels"): lambda: s.client.get("/api/v1/labels"),
        ("GET", "/labels"): lambda: s.client.get("/labels"),
        ("POST", "/api/v1/tips/{tip_id}/labels"): lambda: s.client.post(
            f"/api/v1/tips/{s.open_tip_id}/labels", json={"label_id": labels["api"]}
        ),
        ("DELETE", "/api/v1/tips/{tip_id}/labels/{label_id}"): lambda: s.client.delete(
            f"/api/v1/tips/{s.open_tip_id}/labels/{labels['api']}"
        ),
        ("POST", "/tips/{tip_id}/labels"): lambda: s.client.post(
            f"/tips/{s.open_tip_id}/labels",
            data={"csrf_token": s.csrf(), "label_id": labels["api"]},
            follow_redirects=False,
        ),
        ("POST", "/api/v1/cases/{case_id}/labels"): lambda: s.client.post(
            f"/api/v1/cases/{s.case_id}/labels", json={"label_id": labels["api"]}
        ),
        ("DELETE", "/api/v1/cases/{case_id}/labels/{label_id}"): lambda: s.client.delete(
            f"/api/v1/cases/{s.case_id}/labels/{labels['api']}"
        ),
        ("POST", "/cases/{case_id}/labels"): lambda: s.client.post(
            f"/cases/{s.case_id}/labels",
            data={"csrf_token": s.csrf(), "label_id": labels["api"]},
            follow_redirects=False,
        ),
        ("POST", "/api/v1/labels/{label_id}/retire"): lambda: s.client.post(
            f"/api/v1/labels/{labels['api']}/retire"
        ),
        ("POST", "/labels/{label_id}/retire"): lambda: s.client.post(
            f"/labels/{labels['form']}/retire", data={"csrf_token": s.csrf()}, follow_redirects=False
        ),
        ("GET", "/api/v1/audit/verify"): lambda: (s.as_(Role.AUDITOR), s.client.get("/api/v1/audit/verify"))[
            1
        ],
        ("POST", "/audit/verify"): lambda: s.client.post("/audit/verify", data={"csrf_token": s.csrf()}),
        ("POST", "/api/v1/audit/checkpoints"): lambda: s.client.post("/api/v1/audit/checkpoints"),
        ("POST", "/audit/checkpoint"): lambda: s.client.post(
            "/audit/checkpoint", data={"csrf_token": s.csrf()}
        ),
        ("GET", "/api/v1/audit/export"): lambda: s.client.get("/api/v1/audit/export"),
        ("POST", "/api/v1/audit/witnesses"): s.register_witness,
        ("POST", "/api/v1/audit/witness/cosignatures"): s.cosign_as_witness,
        ("DELETE", "/api/v1/audit/witnesses/{witness_id}"): lambda: s.client.delete(
            f"/api/v1/audit/witnesses/{s.witness['id']}"
        ),
        ("POST", "/admin/witnesses"): lambda: s.client.post(
            "/admin/witnesses",
            data={
                "csrf_token": s.csrf("/admin/witnesses"),
                "verifier_key": generate_witness_signer("witness.example/w2")[1],
            },
        ),
        ("POST", "/admin/witnesses/{witness_id}/revoke"): lambda: s.client.post(
            f"/admin/witnesses/{s.witness_named('witness.example/w2')}/revoke",
            data={"csrf_token": s.csrf("/admin/witnesses")},
        ),
        ("POST", "/account/passkeys"): s.enrol_passkey,
        ("POST", "/account/passkeys/{passkey_id}/revoke"): s.revoke_passkey,
        ("POST", "/admin/login-policy"): lambda: (
            s.fresh(Role.ADMIN),
            s.client.post(
                "/admin/login-policy",
                data={"csrf_token": s.csrf("/admin/login-policy"), "totp_fallback": "true"},
            ),
        )[1],
        ("POST", "/admin/review-policy"): lambda: s.client.post(
            "/admin/review-policy",
            data={"csrf_token": s.csrf("/admin/review-policy"), "second_person": "key_holder"},
        ),
        ("POST", "/account/notifications"): lambda: s.client.post(
            "/account/notifications",
            data={
                "csrf_token": s.csrf("/account/notifications"),
                "enabled": "on",
                "mode": "digest",
                "address": "member@staff.example",
                "openpgp_key": "",
            },
        ),
        ("POST", "/admin/notifications"): lambda: (
            s.fresh(Role.ADMIN),
            s.client.post(
                "/admin/notifications",
                data={
                    "csrf_token": s.csrf("/admin/notifications"),
                    "email_enabled": "on",
                    "webhook_url": "https://bridge.example/hook",
                    "digest_hours": "24",
                },
            ),
        )[1],
    }


@pytest.mark.usefixtures("organisation")
def test_each_audited_route_writes_its_event(
    staff_client: TestClient,
    intake_client: TestClient,
    organisation: Organisation,
    db_session: Session,
    settings: Settings,
    server_secrets: ServerSecrets,
) -> None:
    assert (
        intake_client.post(
            "/api/v1/tips",
            data={"narrative": "with a file"},
            files=[("files", ("a.bin", b"evidence", "application/pdf"))],
        ).status_code
        == 201
    )
    scenario = Scenario(staff_client, organisation, db_session, settings, server_secrets)
    steps = recipes(scenario) | referral_recipes(scenario)
    assert set(steps) == set(AUDITED)
    for route, call in steps.items():
        before = db_session.scalar(select(AuditEvent.seq).order_by(AuditEvent.seq.desc()).limit(1)) or 0
        response = call()
        assert response.status_code < 400, (route, response.status_code, response.text[:300])
        actions = [e.action for e in db_session.scalars(select(AuditEvent).where(AuditEvent.seq > before))]
        assert AUDITED[route] in actions, (route, actions)
