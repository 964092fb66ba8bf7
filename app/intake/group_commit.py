"""Group commit for tips sent without files: the path a flood takes.

Each tip is sealed in the request's own worker thread, outside any transaction
(`app.intake.submission.seal_tip`: the HPKE seal, the envelopes, the receipt and its key).
Only the insert goes to this process's one committer thread, which takes every
tip waiting, inserts them in one transaction and commits once: one durable
commit (one fsync on SQLite) for the whole group instead of one per tip, with
nothing but inserts inside the write lock. A request gets its receipt only
after the commit that holds its tip has returned: an acknowledged report is on
disk. A group that fails as a whole (an invalid row) is retried tip by tip, so
one bad tip does not fail the others.

The committer also keeps the current intake key for the sealers: it reads the
current version in every group's transaction, and a tip sealed to a version
that is no longer current (a rotation started meanwhile) has its data key
sealed again to the current one before it is inserted, as
`UploadDraft.sealing_key_now` does for uploads.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.crypto import envelope, sealing
from app.custody.service import current_intake_key, trusted_intake_public_key
from app.intake import service
from app.intake.models import TIP_DATA_KEY, Tip
from app.intake.schemas import TipSubmission
from app.intake.submission import SealedTip, seal_tip, unknown_station
from app.kit.db import READ_ONLY_OPTION, Database
from app.kit.errors import ServiceUnavailable
from app.kit.server_secrets import ServerSecrets
from app.outbox import events as outbox
from app.stations.models import Station

logger = logging.getLogger(__name__)

# Enough to amortise a commit many times over; small enough that a group's transaction
# stays short.
MAX_GROUP = 64
GATHER_SECONDS = 0.002


@dataclass(frozen=True, slots=True)
class CurrentKey:
    version: int
    public_key: sealing.PublicKey


@dataclass
class _PendingTip:
    sealed: SealedTip
    data_key: bytes = field(repr=False)
    station_id: uuid.UUID | None
    done: Future[str] = field(default_factory=Future)


class TipCommitter:
    """One per process: ``submit`` seals in the caller's thread and returns a future that
    resolves to the receipt once the tip has committed."""

    def __init__(
        self, database: Database, server_secrets: ServerSecrets, *, max_group: int = MAX_GROUP
    ) -> None:
        self._database = database
        self._secrets = server_secrets
        self._max_group = max_group
        self._queue: queue.SimpleQueue[_PendingTip] = queue.SimpleQueue()
        self._current: CurrentKey | None = None
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def knows_current_key(self) -> bool:
        return self._current is not None

    def read_current_key(self) -> CurrentKey:
        """Read (and check) the current intake key; blocking: call it from a worker thread."""
        with self._database.transaction() as session:
            # Read-only: no SQLite write lock for a lookup.
            session.connection(execution_options={READ_ONLY_OPTION: True})
            return self._current_key(session)

    def submit(self, submission: TipSubmission) -> Future[str]:
        """Seal ``submission`` to the current key (``read_current_key`` first) and queue it."""
        key = self._current
        if key is None:
            raise service.NotInitialised
        tip_id, data_key = uuid.uuid4(), envelope.new_data_key()
        sealed = seal_tip(
            tip_id,
            data_key,
            content_version=key.version,
            seal_version=key.version,
            seal_public=key.public_key,
            submission=submission,
            server_secrets=self._secrets,
        )
        pending = _PendingTip(sealed=sealed, data_key=data_key, station_id=submission.station_id)
        self._ensure_running()
        self._queue.put(pending)
        return pending.done

    def _current_key(self, session: Session) -> CurrentKey:
        intake_key = current_intake_key(session)
        if intake_key is None:
            raise service.NotInitialised
        key = CurrentKey(
            intake_key.version, trusted_intake_public_key(intake_key, self._secrets.key_integrity_key)
        )
        self._current = key
        return key

    def _ensure_running(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="daylight-tip-committer", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            group = [self._queue.get()]
            # Like PostgreSQL's commit_delay: when tips are arriving, wait a moment for the ones
            # on their way, so that the per-group cost (a transaction, a key lookup, a commit)
            # is shared by many; a lone tip waits at most this long.
            deadline = time.monotonic() + GATHER_SECONDS
            while len(group) < self._max_group:
                try:
                    group.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            # A waiter whose client went away before its tip was taken is dropped; the others
            # can no longer be cancelled, so their answers are always delivered.
            group = [pending for pending in group if pending.done.set_running_or_notify_cancel()]
            if not group:
                continue
            try:
                self._commit_group(group)
            except BaseException as exc:
                _fail(group, exc)

    def _commit_group(self, group: list[_PendingTip]) -> None:
        try:
            accepted = self._insert(group)
        except IntegrityError:
            if len(group) == 1:
                # A receipt hash or ref that collided (vanishingly rare): the client sends again.
                _fail(group, ServiceUnavailable())
                return
            for pending in group:
                # Those already answered inside the failed group (an unknown station) are not
                # tried again: their answer stands, and a second one would raise.
                if not pending.done.done():
                    self._commit_group([pending])
            return
        for pending in accepted:
            pending.done.set_result(pending.sealed.receipt)

    def _insert(self, group: list[_PendingTip]) -> list[_PendingTip]:
        """Insert the group in one transaction; returns the tips inserted (the others have
        been answered: an unknown station)."""
        with self._database.transaction() as session:
            key = self._current_key(session)
            known = _known_stations(session, {p.station_id for p in group if p.station_id is not None})
            accepted = []
            for pending in group:
                if pending.station_id is not None and pending.station_id not in known:
                    pending.done.set_exception(unknown_station())
                    continue
                if pending.sealed.row["intake_key_version"] != key.version:
                    _reseal_to(pending, key)
                accepted.append(pending)
            if accepted:
                session.execute(insert(Tip), [pending.sealed.row for pending in accepted])
                # The notices commit with the tips: a stored tip is never left unannounced.
                urgent = sum(1 for pending in accepted if pending.sealed.row["urgent"])
                outbox.reports_received(session, urgent=urgent, other=len(accepted) - urgent)
        return accepted


def _reseal_to(pending: _PendingTip, key: CurrentKey) -> None:
    row = pending.sealed.row
    row["intake_key_version"] = key.version
    row["sealed_data_key"] = TIP_DATA_KEY.seal(
        key.public_key, pending.data_key, row_id=str(row["id"]), key_version=key.version
    )


def _known_stations(session: Session, station_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    if not station_ids:
        return set()
    return set(session.scalars(select(Station.id).where(Station.id.in_(station_ids))))


def _fail(group: Iterable[_PendingTip], exc: BaseException) -> None:
    for pending in group:
        if not pending.done.done():
            pending.done.set_exception(exc)
