"""Time and memory of building and opening a case referral, as ratios to a baseline measured in one run.

    make bench   (or: .venv/bin/python bench/referral.py [--reports 20] [--file-mb 5] [--rounds 5]
                  [--backend both|sqlite|postgresql])

On SQLite and, when reachable, PostgreSQL (a throwaway schema on
postgresql+psycopg://postgres@127.0.0.1:5432/test, or DAYLIGHT_TEST_POSTGRES_URL). The blob store
is the data dir's (each blob fsynced when written); DAYLIGHT_BLOB_STORAGE=database with
``--backend postgresql`` measures the database blob store instead (SQLite does not support it).

Set-up, untimed: an organisation (`init_organisation` in a temporary data dir), a caseworker and
two leads holding the intake key (principals built in-process, as a login makes them), the
station registry's seed, ``--reports`` reports sent through the intake service (consent:
authorities and partners, as sent; a narrative of a few KB; one ``--file-mb`` MiB attachment of
random bytes each: neither an image nor a document, so no metadata cleaning runs, and the bench
checks that none did), all verified and gathered in one case with a confirmed station link, and a
recipient added by one lead and confirmed by the other. Defaults: 20 reports, 100 MiB of files.

Then ``--rounds`` fresh referrals of every report, field and file, each step in its own
transaction as its request would be, in-process through the services:

1. propose (`app.referrals.service.propose`, the caseworker): reads and hashes every item, so
   every file is decrypted once;
2. approve (a lead) and sign a checkpoint over the approval in the same transaction, as the staff
   UI does when it holds the audit signing key (`sign_if_held`): every file read and hashed again;
3. seal (`seal`): each file decrypted from the blob store and encrypted into the bundle, which is
   written to the blob store;
4. download (`download`): the bundle streamed from the blob store to a file, as the recipient
   gets it;
5. verify (`app.referrals.bundle.verify_bundle`, the recipient): hashes every ciphertext byte;
6. open (`open_bundle`): verifies again, then decrypts every item into a new folder (fsynced).

Baselines, measured in every round beside the steps (the machine is shared and noisy: the figures
that matter are the ratios within one run):

(a) one pass over the stored files: each attachment read from the blob store through
    `ATTACHMENT_BLOB.decrypt_chunks` and hashed with SHA-256;
(b) `hashlib.sha256` over the same number of bytes in memory.

Seconds are the median over the rounds. Memory: one more referral under ``tracemalloc``, peak
reset per step, minus what was traced when the step began; and, in the timed rounds (without
tracemalloc's own overhead), the process's peak RSS above its RSS when the step began (Linux:
VmHWM after writing 5 to /proc/self/clear_refs), the largest over the rounds.

Targets:

* memory stays bounded: every step streams, so its peak traced memory is well under the
  100 MiB it handles; a line FAIL is printed for any step above 32 MiB;
* time: (a) is two passes over the bytes (decrypt, hash). Seal makes five (decrypt, hash the
  plaintext, encrypt, hash the ciphertext for the index and for the whole file) and open three
  (hash the ciphertext, decrypt, hash the plaintext), both plus writing and fsyncing 100 MiB: seal
  plus open should stay within 7x (a); a line FAIL is printed above that. Propose and approve are
  one pass each, about 1x (a) plus their database work.

The exit status is 1 after a FAIL line.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import hashlib
import os
import random  # bench content, not secrets
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import sessionmaker

from app.audit_log import events as audit
from app.audit_log.checkpoint import VerifierKey
from app.audit_log.signer import local_signer, log_verifier
from app.auth.models import Role, StaffAccount
from app.auth.principal import Principal, UnlockedKeys
from app.cases import station_links
from app.cases.schemas import CaseCreate
from app.cases.service import create_case
from app.crypto import sealing
from app.entrypoints.demo import SEED_FILE
from app.entrypoints.organisation import init_organisation
from app.intake import service as intake_service
from app.intake.cleaning import MetadataOutcome
from app.intake.models import ATTACHMENT_BLOB, Tip, TipAttachment, TipStatus
from app.intake.schemas import TipSubmission
from app.kit.blobs import BlobStorage, blob_storage_for
from app.kit.config import Settings
from app.kit.db import Database, create_database_engine
from app.kit.server_secrets import ServerSecrets, load_server_secrets
from app.referrals import recipients as registry
from app.referrals import service
from app.referrals.bundle import BundleEntry, open_bundle, verify_bundle
from app.referrals.content import REPORT_FIELDS, ReportSelection, Selection
from app.referrals.keys import generate_recipient_key, parse_public_key
from app.referrals.models import RecipientKind, Referral
from app.stations import registry as stations
from app.stations.models import Confidence, LinkRelation, Station
from app.triage import reading as tip_reading

POSTGRES_URL = os.environ.get(
    "DAYLIGHT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
MiB = 2**20
PEAK_LIMIT_MIB = 32
SEAL_AND_OPEN_LIMIT = 7.0  # x baseline (a): fsyncs of a busy disk weigh on open
READ_BLOCK = 1 * MiB
IDENTIFYING = "Officer Wang Lei"
# Not a magic number of any image or document format the intake cleans.
FILE_PREFIX = b"daylight referral bench\n"
STEPS = ("propose", "approve + sign", "seal", "download", "verify", "open")
BASELINES = ("(a) read+decrypt+sha256", "(b) sha256 in memory")


# --- Setting up -----------------------------------------------------------------------------------


@contextmanager
def organisation_database(backend: str, data_dir: Path) -> Iterator[Database | None]:
    """A database for a new organisation: a SQLite file, or a throwaway PostgreSQL schema."""
    if backend == "sqlite":
        database = Database.from_settings(Settings(data_dir=data_dir))
        try:
            yield database
        finally:
            database.engine.dispose()
        return
    admin = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
    schema = f"daylight_bench_referral_{secrets.token_hex(4)}"
    try:
        with admin.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # no PostgreSQL: say so, do not fail the other benchmarks
        print(f"referral benchmark on PostgreSQL skipped: unreachable ({type(exc).__name__})")
        admin.dispose()
        yield None
        return
    separator = "&" if "?" in POSTGRES_URL else "?"
    engine = create_database_engine(f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}")
    try:
        yield Database(engine, sessionmaker(engine, expire_on_commit=False))
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def principal_of(account: StaffAccount, intake: dict[int, sealing.PrivateKey]) -> Principal:
    """The member as a login makes them, holding the intake key."""
    return Principal(
        account_id=account.id,
        username=account.username,
        role=Role(account.role),
        session_id=uuid.uuid4(),
        keys=UnlockedKeys(personal=sealing.generate_private_key(), intake=intake),
        reauthenticated_at=dt.datetime.now(dt.UTC),
        csrf_token="",
    )


@dataclass
class Bench:
    database: Database
    settings: Settings
    server_secrets: ServerSecrets
    blobs: BlobStorage
    proposer: Principal
    approver: Principal
    context: service.SealingContext
    log_key: VerifierKey
    recipient_key: sealing.PrivateKey
    case_id: uuid.UUID
    selection: Selection
    file_bytes: int  # the attachments' plaintext, in all


def narrative(rng: random.Random, number: int) -> str:
    """A few KB of text, the identifying name in it (redacted in what leaves)."""
    words = ("station", "caller", "consulate", "family", "passport", "embassy", "office", "phone", "police")
    sentences = [f"Report {number}: {IDENTIFYING} from the Dublin station phoned my mother twice."]
    while sum(len(sentence) for sentence in sentences) < 3000:
        sentences.append(" ".join(rng.choice(words) for _ in range(12)).capitalize() + ".")
    return " ".join(sentences)


def send_report(bench: Bench, rng: random.Random, number: int, file_bytes: int) -> uuid.UUID:
    """One report through the intake service, with one attachment streamed in 1 MiB pieces."""
    submission = TipSubmission.model_validate(
        {
            "narrative": narrative(rng, number),
            "tactics": ["family_pressure"],
            "host_country": "IE",
            "host_city": "Dublin",
            "referral_consent": "authorities_and_partners",
            "referral_form": "as_sent",
        }
    )
    # As the intake does: the draft in a short transaction of its own, the file streamed before the
    # request's transaction first touches the database (a database blob store writes its own).
    with bench.database.transaction() as lookup:
        draft = intake_service.start_tip(lookup, bench.server_secrets)
    with bench.database.transaction() as session:
        writer = draft.open_attachment(
            session, bench.blobs, settings=bench.settings, content_type="application/octet-stream"
        )
        remaining = file_bytes
        first = True
        while remaining:
            piece = rng.randbytes(min(READ_BLOCK, remaining))
            if first:
                piece = FILE_PREFIX + piece[len(FILE_PREFIX) :]
                first = False
            writer.write(piece)
            remaining -= len(piece)
        writer.close()
        # Random bytes: neither an image nor a document, so stored as sent, never cleaned.
        assert writer.metadata is MetadataOutcome.NOT_REMOVED, "the bench's files must not be cleaned"
        assert writer.not_cleaned_reason is None, writer.not_cleaned_reason
        intake_service.finish_tip(session, draft, submission)
    return draft.id


def set_up(database: Database, data_dir: Path, reports: int, file_bytes: int) -> Bench:
    settings = Settings(data_dir=data_dir)
    created = init_organisation(settings, database)
    server_secrets = load_server_secrets(settings.secrets_dir)
    intake = {created.intake_key.version: created.intake_private}
    blobs = blob_storage_for(settings, database)
    with database.transaction() as session:
        accounts = [
            StaffAccount(username="bench-caseworker", role=Role.CASEWORKER, created_on=dt.date.today()),
            StaffAccount(username="bench-lead-1", role=Role.LEAD, created_on=dt.date.today()),
            StaffAccount(username="bench-lead-2", role=Role.LEAD, created_on=dt.date.today()),
        ]
        session.add_all(accounts)
        stations.apply(session, stations.parse(SEED_FILE.read_bytes(), "csv"), audit.SYSTEM)
    caseworker, first_lead, second_lead = (principal_of(account, intake) for account in accounts)
    signer = local_signer(settings, server_secrets)
    assert signer is not None, "the bench signs checkpoints in-process: the signing key must be here"
    log_key = log_verifier(settings, server_secrets)
    bench = Bench(
        database=database,
        settings=settings,
        server_secrets=server_secrets,
        blobs=blobs,
        proposer=caseworker,
        approver=first_lead,
        context=service.SealingContext(
            blobs=blobs,
            server_secrets=server_secrets,
            log_key=log_key,
            witnesses_required=settings.audit_witnesses_required,
            sender=settings.audit_log_origin,
        ),
        log_key=log_key,
        recipient_key=sealing.generate_private_key(),  # replaced below
        case_id=uuid.uuid4(),  # replaced below
        selection=Selection(recipient_ids=(), reports=()),  # replaced below
        file_bytes=reports * file_bytes,
    )
    rng = random.Random(20240601)  # noqa: S311 - bench content
    tip_ids = [send_report(bench, rng, number, file_bytes) for number in range(1, reports + 1)]
    with database.transaction() as session:
        for tip_id in tip_ids:
            session.get_one(Tip, tip_id).status = TipStatus.VERIFIED
    with database.transaction() as session:
        case = create_case(
            session,
            caseworker,
            CaseCreate(
                title="Calls from the Dublin station",
                summary="Families of the people who reported pressured by phone.",
                tip_ids=tip_ids,
                tactics=["family_pressure"],
                host_country="IE",
            ),
            server_secrets,
        )
        dublin = session.scalars(select(Station).where(Station.city == "Dublin")).one()
        link = station_links.propose_link(
            session,
            caseworker,
            case.id,
            dublin.id,
            LinkRelation.CONTACTED_VIA,
            Confidence.HIGH,
            "The caller named the Dublin office; the number is in a published report.",
        )
        case_id, link_id = case.id, link.id
    with database.transaction() as session:
        station_links.confirm_link(session, first_lead, case_id, link_id)
    recipient_key, public_text = generate_recipient_key("Example Refugee Council")
    with database.transaction() as session:
        recipient = registry.add_recipient(
            session,
            first_lead,
            name="Example Refugee Council",
            contact="+31 70 000 0000, desk officer",
            kind=RecipientKind.PARTNER,
            public_key_text=public_text,
            server_secrets=server_secrets,
        )
        recipient_id = recipient.id
    with database.transaction() as session:
        registry.confirm_recipient(
            session,
            second_lead,
            recipient_id,
            fingerprint=parse_public_key(public_text).fingerprint,
            integrity_key=server_secrets.key_integrity_key,
        )
        attachments = {
            attachment.tip_id: attachment.id
            for attachment in session.scalars(select(TipAttachment).where(TipAttachment.tip_id.in_(tip_ids)))
        }
    bench.recipient_key, bench.case_id = recipient_key, case_id
    bench.selection = Selection(
        recipient_ids=(recipient_id,),
        reports=tuple(
            ReportSelection(tip_id=tip_id, fields=REPORT_FIELDS, attachment_ids=(attachments[tip_id],))
            for tip_id in tip_ids
        ),
        station_link_ids=(link_id,),
        case_summary=True,
        redactions=(IDENTIFYING,),
        cover_note="Please call us before acting on this.",
    )
    return bench


# --- Measuring ------------------------------------------------------------------------------------


def _status_kib(name: str) -> int | None:
    try:
        with open("/proc/self/status") as lines:
            match = re.search(rf"^{name}:\s+(\d+) kB", lines.read(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) if match else None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


@dataclass
class Sample:
    seconds: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    traced_mib: float | None = None


class Meter:
    """Runs each step, timing it, and (when ``traced``) its peak traced memory above its start."""

    def __init__(self) -> None:
        self.samples: dict[str, Sample] = {}
        self.traced = False

    def run(self, name: str, step: Callable[[], None]) -> None:
        sample = self.samples.setdefault(name, Sample())
        gc.collect()
        if self.traced:
            tracemalloc.reset_peak()
            start = tracemalloc.get_traced_memory()[0]
            step()
            sample.traced_mib = (tracemalloc.get_traced_memory()[1] - start) / MiB
            return
        rss_before = _status_kib("VmRSS") if _reset_peak_rss() else None
        started = time.perf_counter()
        step()
        sample.seconds.append(time.perf_counter() - started)
        peak = _status_kib("VmHWM")
        if rss_before is not None and peak is not None:
            sample.rss_mib.append((peak - rss_before) / 1024)


def baseline_a(bench: Bench) -> None:
    """Each attachment read from the blob store, decrypted and hashed: one pass over the files."""
    total = 0
    with bench.database.transaction() as session:
        for report in bench.selection.reports:
            tip, data_key = tip_reading.open_tip(session, bench.proposer, report.tip_id)
            for attachment_id in report.attachment_ids:
                attachment = session.get_one(TipAttachment, attachment_id)
                key, version = tip_reading.attachment_key(
                    bench.proposer,
                    tip,
                    data_key,
                    attachment,
                    integrity_key=bench.server_secrets.key_integrity_key,
                )
                source = bench.blobs.open(attachment_id)
                try:
                    digest = hashlib.sha256()
                    for chunk in ATTACHMENT_BLOB.decrypt_chunks(
                        source, key, row_id=str(attachment_id), key_version=version
                    ):
                        digest.update(chunk)
                        total += len(chunk)
                finally:
                    source.close()
    assert total == bench.file_bytes, (total, bench.file_bytes)


def baseline_b(data: bytes) -> None:
    hashlib.sha256(data).digest()


@dataclass
class Outcome:
    bundle_size: int
    items: int
    item_bytes: int


def referral_round(bench: Bench, meter: Meter, scratch: Path, memory: bytes) -> Outcome:
    """The two baselines, then one fresh referral from proposal to the opened folder."""
    meter.run(BASELINES[0], lambda: baseline_a(bench))
    meter.run(BASELINES[1], lambda: baseline_b(memory))
    referral_id = uuid.uuid4()  # the proposal's, once made
    sealed: list[Referral] = []
    entries: list[BundleEntry] = []
    path = scratch / "referral.daylight-referral"
    out_dir = scratch / "opened"

    def propose() -> None:
        nonlocal referral_id
        with bench.database.transaction() as session:
            referral_id = service.propose(
                session,
                bench.proposer,
                bench.case_id,
                bench.selection,
                blobs=bench.blobs,
                server_secrets=bench.server_secrets,
            ).id

    def approve() -> None:
        with bench.database.transaction() as session:
            service.approve(
                session, bench.approver, referral_id, blobs=bench.blobs, server_secrets=bench.server_secrets
            )
            signer = local_signer(bench.settings, bench.server_secrets)
            assert signer is not None
            signer.sign_pending(session)

    def seal() -> None:
        with bench.database.transaction() as session:
            sealed.append(service.seal(session, bench.approver, referral_id, bench.context))

    def download() -> None:
        with bench.database.transaction() as session:
            _, chunks = service.download(session, bench.approver, referral_id, bench.context)
        with path.open("wb") as sink:
            for chunk in chunks:
                sink.write(chunk)

    def verify() -> None:
        report = verify_bundle(path, bench.recipient_key, log_key=bench.log_key)
        assert report.ok, report.problems
        entries.extend(report.items)

    def open_() -> None:
        report = open_bundle(path, bench.recipient_key, out_dir, log_key=bench.log_key)
        assert report.ok, report.problems

    try:
        for name, step in zip(STEPS, (propose, approve, seal, download, verify, open_), strict=True):
            meter.run(name, step)
        [referral] = sealed
        assert referral.bundle_size is not None
        assert path.stat().st_size == referral.bundle_size
        return Outcome(
            bundle_size=referral.bundle_size,
            items=len(entries),
            item_bytes=sum(entry.size for entry in entries),
        )
    finally:
        # Only the bench's own files: each round would otherwise leave 300 MiB behind.
        shutil.rmtree(out_dir, ignore_errors=True)
        path.unlink(missing_ok=True)
        for referral in sealed:
            if referral.bundle_blob_id is not None:
                bench.blobs.delete(referral.bundle_blob_id)


# --- Reporting ------------------------------------------------------------------------------------


def report(backend: str, bench: Bench, meter: Meter, outcome: Outcome, reports: int, rounds: int) -> bool:
    """The table; False when a target was missed."""
    mib = bench.file_bytes / MiB
    print(
        f"{backend}: a referral of {reports} reports, {mib:.0f} MiB of files "
        f"({outcome.items} items), median of {rounds} round{'s' * (rounds != 1)}"
    )
    base = statistics.median(meter.samples[BASELINES[0]].seconds)
    print(
        f"  {'step':<26} {'seconds':>8} {'MiB/s':>8} {'x (a)':>7} {'traced MiB':>11} {'RSS+ MiB':>9}"
        f"   {'spread (s)':>13}"
    )
    ok = True
    for name in (*BASELINES, *STEPS):
        sample = meter.samples[name]
        seconds = statistics.median(sample.seconds)
        traced = "" if sample.traced_mib is None else f"{sample.traced_mib:11.1f}"
        rss = f"{max(sample.rss_mib):9.1f}" if sample.rss_mib else f"{'n/a':>9}"
        spread = f"{min(sample.seconds):.2f}-{max(sample.seconds):.2f}"
        print(
            f"  {name:<26} {seconds:8.3f} {mib / seconds:8.0f} {seconds / base:7.2f} {traced:>11} {rss}"
            f"   {spread:>13}"
        )
    seal_open = sum(statistics.median(meter.samples[name].seconds) for name in ("seal", "open")) / base
    overhead = (outcome.bundle_size - outcome.item_bytes) / outcome.item_bytes * 100
    print(
        f"  bundle {outcome.bundle_size:,} bytes for {outcome.item_bytes:,} bytes of items "
        f"({outcome.item_bytes - bench.file_bytes:,} of them text): overhead {overhead:.3f} %"
    )
    print(f"  seal + open = {seal_open:.2f} x (a)   (target: at most {SEAL_AND_OPEN_LIMIT:.0f} x)")
    if seal_open > SEAL_AND_OPEN_LIMIT:
        ok = False
        print(f"  FAIL: seal + open took {seal_open:.2f} x baseline (a), above {SEAL_AND_OPEN_LIMIT:.0f} x")
    for name in STEPS:
        traced_mib = meter.samples[name].traced_mib
        if traced_mib is not None and traced_mib > PEAK_LIMIT_MIB:
            ok = False
            print(
                f"  FAIL: {name} held {traced_mib:.1f} MiB at its peak (traced), above {PEAK_LIMIT_MIB} MiB "
                f"for {mib:.0f} MiB handled"
            )
    return ok


def bench_backend(backend: str, reports: int, file_bytes: int, rounds: int) -> bool:
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "data"
        with organisation_database(backend, data_dir) as database:
            if database is None:
                return True
            started = time.perf_counter()
            bench = set_up(database, data_dir, reports, file_bytes)
            print(f"{backend}: set up in {time.perf_counter() - started:.1f} s", file=sys.stderr)
            memory = random.Random(1).randbytes(bench.file_bytes)  # noqa: S311 - bench content
            meter = Meter()
            work = Path(scratch) / "recipient"
            work.mkdir()
            for _ in range(rounds):
                outcome = referral_round(bench, meter, work, memory)
            meter.traced = True
            tracemalloc.start()
            try:
                referral_round(bench, meter, work, memory)
            finally:
                tracemalloc.stop()
            with database.transaction() as session:
                made = len(session.scalars(select(Referral.id)).all())
            assert made == rounds + 1, made
    return report(backend, bench, meter, outcome, reports, rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", type=int, default=20, help="reports in the case, one file each")
    parser.add_argument("--file-mb", type=float, default=5, help="MiB per file")
    parser.add_argument("--rounds", type=int, default=5, help="timed referrals (the median is shown)")
    parser.add_argument("--backend", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    if not 1 <= args.reports <= 100:
        parser.error("--reports is 1 to 100 (a case holds at most 100 reports)")
    if args.rounds < 1 or args.file_mb <= 0:
        parser.error("--rounds is at least 1 and --file-mb above 0")
    backends = ("sqlite", "postgresql") if args.backend == "both" else (args.backend,)
    ok = True
    for backend in backends:
        ok &= bench_backend(backend, args.reports, int(args.file_mb * MiB), args.rounds)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
