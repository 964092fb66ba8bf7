"""The two ASGI applications, built from one settings object.

Staff routes are never mounted on the intake app: a bug in the public app's
routing cannot expose them, and the two can be published on different
networks (the intake app as a public onion service, the staff app behind
client authorisation).
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI

from app.audit.routes_api import router as audit_router
from app.audit.routes_web import router as audit_web_router
from app.audit.routes_witness import router as audit_witness_router
from app.auth import password_keys
from app.auth.routes_api import accounts_router, links_router
from app.auth.routes_api import router as auth_router
from app.auth.routes_confirmation import router as confirmation_router
from app.auth.routes_web import router as auth_web_router
from app.cases.routes_api import router as cases_router
from app.cases.routes_web import router as cases_web_router
from app.intake.group_commit import TipCommitter
from app.intake.routes_api import router as intake_api_router
from app.intake.routes_followup import FollowupRefused, followup_refused_handler
from app.intake.routes_followup import router as intake_followup_router
from app.intake.routes_web import FormRejected, form_rejected_handler
from app.intake.routes_web import router as intake_web_router
from app.keys.routes_api import router as key_grants_router
from app.keys.routes_web import router as key_grants_web_router
from app.kit.blobs import blob_storage_for
from app.kit.config import Settings
from app.kit.db import Database
from app.kit.server_secrets import (
    INTAKE_SECRETS,
    SECRET_NAMES,
    STAFF_SECRETS,
    load_server_secrets,
    without_audit_signing_key,
)
from app.notify.routes_web import router as notify_web_router
from app.referrals.routes_web import router as referrals_web_router
from app.reporting.routes_web import router as reporting_web_router
from app.stations.routes_api import router as stations_router
from app.stations.routes_web import router as stations_web_router
from app.triage.routes_api import router as triage_router
from app.triage.routes_desk import api_router as triage_desk_api_router
from app.triage.routes_desk import router as triage_desk_router
from app.triage.routes_labels import api_router as labels_router
from app.triage.routes_labels import router as labels_web_router
from app.triage.routes_web import router as triage_web_router
from app.web.app_factory import build_app
from app.web.context import AppContext
from app.web.error_pages import IntakeErrorPages
from app.web.health import router as health_router
from app.web.staff_errors import install_staff_page_errors

UPLOAD_CHUNK_POOL_SIZE = 4

# Routes reachable without a staff session. Everything on the intake app is
# public by design; on the staff app only these two (test_route_guards.py).
STAFF_PUBLIC_ROUTES = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("POST", "/api/v1/auth/login"),
        # One-time account links: the token in the path is the credential.
        ("GET", "/api/v1/account-links/{token}"),
        ("POST", "/api/v1/account-links/{token}"),
        ("GET", "/login"),
        ("POST", "/login"),
        ("GET", "/link/{token}"),
        ("POST", "/link/{token}"),
    }
)


def build_context(
    settings: Settings,
    database: Database | None = None,
    *,
    secret_names: tuple[str, ...] = SECRET_NAMES,
    pool_size: int | None = None,
) -> AppContext:
    """``database`` for tests (their rolled-back connection); otherwise one is made, its pool
    ``pool_size`` for a serving process (`daylight serve`), sized to its admission control."""
    blob_database = database
    if database is None:
        database = Database.from_settings(settings, pool_size=pool_size)
        # Chunks of files stored in the database are written while uploads stream, outside
        # admission: on a pool of their own, they never take a connection an admitted
        # request is waiting for.
        blob_database = (
            Database.from_settings(settings, pool_size=UPLOAD_CHUNK_POOL_SIZE)
            if settings.blob_storage == "database" and pool_size is not None
            else database
        )
    assert blob_database is not None  # noqa: S101 - set on both paths above
    return AppContext(
        settings=settings,
        database=database,
        secrets=load_server_secrets(settings.secrets_dir, held_secret_names(settings, secret_names)),
        blobs=blob_storage_for(settings, blob_database),
        upload_slots=asyncio.Semaphore(settings.max_concurrent_uploads),
    )


def held_secret_names(settings: Settings, names: tuple[str, ...]) -> tuple[str, ...]:
    """The secrets a process of this deployment loads: never the audit signing key where the
    checkpoint signer runs on a host of its own (``audit_verifier_key`` is then configured)."""
    return names if settings.audit_verifier_key is None else without_audit_signing_key(names)


def serving_pool_size(settings: Settings) -> int:
    """Connections one serving process keeps: one per database slot (app.web.admission), one for
    the tip committer (app.intake.group_commit) and one spare."""
    return settings.max_database_requests + 2


def create_intake_app(
    settings: Settings, *, database: Database | None = None, pool_size: int | None = None
) -> FastAPI:
    context = build_context(settings, database, secret_names=INTAKE_SECRETS, pool_size=pool_size)
    app = build_app(context, title="Daylight intake")
    app.state.tip_committer = TipCommitter(context.database, context.secrets)
    app.include_router(health_router)
    app.include_router(intake_web_router)
    app.include_router(intake_followup_router)
    app.include_router(intake_api_router)
    app.add_exception_handler(FormRejected, form_rejected_handler)
    app.add_exception_handler(FollowupRefused, followup_refused_handler)
    # Around everything, FastAPI's own body-size limit included: every refusal a browser meets,
    # admission control's and the size limit's too, is a page.
    app.outermost.append(IntakeErrorPages)
    return app


def create_staff_app(
    settings: Settings, *, database: Database | None = None, pool_size: int | None = None
) -> FastAPI:
    context = build_context(settings, database, secret_names=STAFF_SECRETS, pool_size=pool_size)
    # Logins derive Argon2id keys: at most this many at once per process (app.auth.password_keys).
    password_keys.configure_derivation_gate(settings)
    app = build_app(context, title="Daylight staff", refuse_cross_origin=True)
    app.include_router(health_router)
    app.include_router(auth_router)
    app.include_router(accounts_router)
    app.include_router(confirmation_router)
    app.include_router(links_router)
    app.include_router(key_grants_router)
    app.include_router(triage_desk_api_router)
    app.include_router(triage_router)
    app.include_router(cases_router)
    app.include_router(stations_router)
    app.include_router(labels_router)
    app.include_router(auth_web_router)
    app.include_router(key_grants_web_router)
    app.include_router(notify_web_router)
    # Before the tip and case pages: their /{action} routes would otherwise answer /labels.
    app.include_router(labels_web_router)
    app.include_router(referrals_web_router)
    app.include_router(triage_desk_router)
    app.include_router(triage_web_router)
    app.include_router(cases_web_router)
    app.include_router(stations_web_router)
    app.include_router(reporting_web_router)
    app.include_router(audit_router)
    app.include_router(audit_web_router)
    app.include_router(audit_witness_router)
    install_staff_page_errors(app)
    return app
