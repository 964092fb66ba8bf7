"""`daylight serve`: the intake app and the staff app in separate worker processes.

The supervisor (this process) binds both listening sockets, sweeps orphan blobs
left by a crash, then starts ``intake_workers`` processes for the intake app
and ``staff_workers`` for the staff app, each with a fresh interpreter (the
spawn method: nothing of the supervisor's memory is inherited), and restarts a
worker that dies. The workers of one app share its socket; the kernel spreads
connections among them.

Why separate processes per app: the public intake app faces the flood and the
adversary. Under load it must not take CPU, threads or connections from the
staff app, and a compromise of an intake process must not reach the secrets or
the session keys of staff: an intake process loads only the receipt pepper and
the key-integrity key (INTAKE_SECRETS), never the TOTP key or the audit signing
key, and it never holds a staff session's unlocked keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

import uvicorn

import app.models  # noqa: F401 - every model, so every column naming a blob is registered (app.kit.blobs)
from app.audit_log.signer import SignerRun, local_signer
from app.entrypoints.apps import create_intake_app, create_staff_app, serving_pool_size
from app.entrypoints.integrity_backfill import backfill_row_macs
from app.intake.orphans import sweep_orphan_blobs
from app.kit.config import Settings, load_settings
from app.kit.db import Database
from app.kit.logs import configure_logging
from app.kit.server_secrets import load_server_secrets
from app.notify.sender import NotificationSender

logger = logging.getLogger("daylight")

# A worker that dies is restarted, but not in a tight loop if it dies at once every time.
RESTART_BACKOFF_SECONDS = 1.0
GRACEFUL_SHUTDOWN_SECONDS = 10


def default_worker_count() -> int:
    """One worker per core this process may run on."""
    return max(1, len(os.sched_getaffinity(0)))


@dataclass(frozen=True)
class WorkerSpec:
    app: str  # "intake" or "staff"
    index: int
    listener: socket.socket


def bind_listener(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named explicitly: the accepted sockets inherit it, and only then does asyncio
    # set TCP_NODELAY on them. Without it, a response written as two segments (headers, body)
    # waits for the client's delayed ACK: 40 ms per answer.
    listener = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(2048)
    return listener


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def plain_http_warning(settings: Settings, host: str) -> str | None:
    """What to tell the operator when browsers may reach the staff app over plain HTTP.

    Staff cookies are ``__Host-`` and ``Secure`` (app.auth.deps.session_cookie), except in
    development on a loopback connection: a browser keeps them only over HTTPS (or a .onion
    address), so a login over plain HTTP to this address succeeds and keeps nobody logged
    in. Not a refusal: behind nginx or Tor on another host or container (compose binds
    0.0.0.0 inside its network), a non-loopback address is right.
    """
    if is_loopback_host(host):
        return None
    where = "over any but a loopback address (development)" if settings.is_development else "in production"
    return (
        f"daylight: WARNING: the staff app listens on {host}, not a loopback address. Its login "
        f"cookies are __Host- and Secure {where}, so browsers keep them only over HTTPS (or a "
        ".onion address): if browsers reach this address over plain HTTP, the login will keep "
        "nobody logged in. Put TLS (nginx) or the onion service in front of it (docs/deploy.md), "
        "or serve on 127.0.0.1."
    )


def longest_upload(settings: Settings) -> dt.timedelta:
    """No upload in progress is older than this (its deadline), so older unnamed blobs are orphans."""
    return dt.timedelta(seconds=settings.upload_deadline_seconds + settings.request_idle_timeout_seconds)


def sweep_at_startup(settings: Settings) -> None:
    database = Database.from_settings(settings)
    try:
        removed = sweep_orphan_blobs(settings, database, older_than=longest_upload(settings))
    except Exception:
        # Never a reason not to serve: doctor reports what is left.
        logger.exception("the orphan blob sweep failed; run daylight doctor")
        return
    finally:
        database.engine.dispose()
    if removed:
        logger.warning("removed %s orphan blobs left by an interrupted upload", removed)


def serve(
    data_dir: Path, *, host: str, intake_port: int, staff_port: int, intake_workers: int, staff_workers: int
) -> None:
    settings = load_settings(data_dir)
    if warning := plain_http_warning(settings, host):
        print(warning, file=sys.stderr, flush=True)
    intake_listener = bind_listener(host, intake_port)
    staff_listener = bind_listener(host, staff_port)
    sweep_at_startup(settings)
    backfill_at_startup(settings)
    sign_at_boundary(settings, "startup")
    specs = [WorkerSpec("intake", index, intake_listener) for index in range(intake_workers)] + [
        WorkerSpec("staff", index, staff_listener) for index in range(staff_workers)
    ]
    try:
        Supervisor(data_dir, specs).run()
    finally:
        sign_at_boundary(settings, "shutdown")


class Supervisor:
    def __init__(self, data_dir: Path, specs: list[WorkerSpec]) -> None:
        self._data_dir = data_dir
        self._specs = specs
        self._context = multiprocessing.get_context("spawn")
        self._workers: dict[int, BaseProcess] = {}
        self._stopping = False

    def _start(self, slot: int) -> None:
        spec = self._specs[slot]
        process = self._context.Process(
            target=run_worker,
            args=(self._data_dir, spec.app, spec.index, spec.listener),
            name=f"daylight-{spec.app}-{spec.index}",
        )
        process.start()
        self._workers[slot] = process

    def _stop(self, _signum: int, _frame: FrameType | None) -> None:
        self._stopping = True

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for slot in range(len(self._specs)):
            self._start(slot)
        try:
            while not self._stopping:
                time.sleep(0.2)
                for slot, process in list(self._workers.items()):
                    if not process.is_alive() and not self._stopping:
                        logger.error(
                            "a %s worker exited (code %s); starting it again",
                            self._specs[slot].app,
                            process.exitcode,
                        )
                        time.sleep(RESTART_BACKOFF_SECONDS)
                        self._start(slot)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for process in self._workers.values():
            if process.is_alive() and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + GRACEFUL_SHUTDOWN_SECONDS + 2
        for process in self._workers.values():
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


def run_worker(data_dir: Path, app_name: str, index: int, listener: socket.socket) -> None:
    """One worker process: one app, its own pool sized to its admission control."""
    configure_logging()
    settings = load_settings(data_dir)
    factory = create_intake_app if app_name == "intake" else create_staff_app
    app = factory(settings, pool_size=serving_pool_size(settings))
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            # No access log: it would record client addresses and request times.
            access_log=False,
            # Never take a client address from X-Forwarded-For or similar.
            proxy_headers=False,
            forwarded_allow_ips="",
            server_header=False,
            log_level="warning",
            lifespan="off",
            # Our JSON handler (app.kit.logs) for every logger, uvicorn's included.
            log_config=None,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        )
    )
    # One staff worker signs checkpoints and sends notices (several would be safe, only wasteful).
    background_worker = app_name == "staff" and index == 0
    asyncio.run(_serve_worker(server, listener, settings if background_worker else None))


async def _serve_worker(
    server: uvicorn.Server,
    listener: socket.socket,
    background_settings: Settings | None,
) -> None:
    tasks = []
    if background_settings is not None:
        tasks.append(asyncio.create_task(_sign_checkpoints_continually(background_settings)))
        if background_settings.notify_interval_seconds > 0:
            tasks.append(asyncio.create_task(_send_notices_continually(background_settings)))
    try:
        await server.serve(sockets=[listener])
    finally:
        for task in tasks:
            task.cancel()


async def _send_notices_continually(settings: Settings) -> None:
    """`daylight notify`, every ``notify_interval_seconds``, in a worker thread: a slow mail
    server delays notices, never a request. Safe beside a cron `notify` and on several nodes."""
    database = Database.from_settings(settings)
    try:
        integrity_key = load_server_secrets(settings.secrets_dir, ("key_integrity_key",)).key_integrity_key
        sender = NotificationSender(database, settings, integrity_key)
    except Exception:
        logger.exception("the notification sender could not start; no notices will be sent")
        return
    while True:
        await asyncio.sleep(settings.notify_interval_seconds)
        try:
            await asyncio.to_thread(sender.run_once)
        except Exception:
            logger.exception("sending notices failed; they stay queued")


async def _sign_checkpoints_continually(settings: Settings) -> None:
    """Sign a checkpoint whenever events arrived, looking every ``audit_checkpoint_delay_seconds``.

    One signature per look covers every request committed since the last: the signing cost
    follows time, not traffic. Safe on several nodes: appends and checkpoints are serialised
    by a lock, and a node that finds nothing new signs nothing.
    """
    run = boundary_signer(settings)
    if run is None:
        return
    while True:
        await asyncio.sleep(settings.audit_checkpoint_delay_seconds)
        try:
            await asyncio.to_thread(run.sign_if_due)
        except Exception:
            logger.exception("audit checkpoint failed")


def boundary_signer(settings: Settings) -> SignerRun | None:
    """The signer of this deployment when this host holds the signing key; None when
    ``audit_verifier_key`` says it runs elsewhere (`daylight audit signer`)."""
    if settings.audit_verifier_key is not None:
        return None
    signer = local_signer(settings, load_server_secrets(settings.secrets_dir, ("audit_signing_key",)))
    return None if signer is None else SignerRun(signer, Database.from_settings(settings))


def backfill_at_startup(settings: Settings) -> None:
    """Messages from before row MACs get theirs, once (app.entrypoints.integrity_backfill)."""
    database = Database.from_settings(settings)
    try:
        key = load_server_secrets(settings.secrets_dir, ("key_integrity_key",)).key_integrity_key
        count = backfill_row_macs(database, key)
    except Exception:
        logger.exception("the row MAC backfill failed; messages without a MAC stay hidden")
        return
    finally:
        database.engine.dispose()
    if count:
        logger.warning("gave %s messages from before row MACs their MAC", count)


def sign_at_boundary(settings: Settings, moment: str) -> None:
    """At startup (a crash may have left an unsigned tail) and after a clean shutdown (the last
    requests' events): never leave events unsigned across a stop. Never a reason not to serve."""
    try:
        run = boundary_signer(settings)
        if run is None:
            return
        try:
            run.sign_if_due()
        finally:
            run.database.engine.dispose()
    except Exception:
        logger.exception("the audit checkpoint at %s failed", moment)
