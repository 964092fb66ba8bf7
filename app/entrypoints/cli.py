"""The `daylight` command (also `python -m app`). The stable contract is in DESIGN section 8."""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TextIO

import pyotp
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from app.audit_log import events as audit
from app.audit_log import service as audit_service
from app.audit_log.checkpoint import parse_verifier_key, verifier_key
from app.audit_log.offline import verify_export
from app.auth.accounts import UsernameTaken, invite_account
from app.auth.models import Role, StaffAccount
from app.auth.permissions import Permission, role_has
from app.auth.service import account_actor, authenticate
from app.crypto import sealing
from app.crypto.errors import DecryptionError
from app.entrypoints import backup as backup_module
from app.entrypoints import doctor
from app.entrypoints import serve as serve_module
from app.entrypoints.demo import create_demo, read_credentials
from app.entrypoints.organisation import OrganisationExists, init_organisation
from app.keys import rotation
from app.keys.service import current_intake_key, grant_intake_key, recover_intake_key
from app.kit.blobs import blob_storage_for
from app.kit.config import Settings, load_settings
from app.kit.db import READ_ONLY_OPTION, Database
from app.kit.logs import configure_logging
from app.kit.server_secrets import ServerSecrets, load_server_secrets
from app.stations import registry
from app.triage import retention


def _data_dir(value: str) -> Path:
    return Path(value).expanduser().resolve()


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def cmd_init(args: argparse.Namespace) -> int:
    settings = load_settings(args.data_dir)
    database = Database.from_settings(settings)
    try:
        organisation = init_organisation(settings, database)
    except OrganisationExists:
        database.engine.dispose()
        print(
            f"daylight: an organisation already exists in {args.data_dir}; nothing changed.", file=sys.stderr
        )
        return 1
    database.engine.dispose()
    print(f"Created a Daylight organisation in {args.data_dir}.\n")
    print("RECOVERY KEY (shown once; print it, store it offline, never on this server):\n")
    print(f"    {organisation.recovery_key}\n")
    print("It can grant the intake key again if no key holder is left.")
    print(f"\nNext: daylight accounts invite --data-dir {args.data_dir} --username YOU  (the first admin)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    settings = load_settings(args.data_dir)
    database = Database.from_settings(settings)
    try:
        organisation, accounts = create_demo(settings, database)
    except OrganisationExists:
        print(
            f"daylight: an organisation already exists in {args.data_dir}; nothing changed.", file=sys.stderr
        )
        return 1
    finally:
        database.engine.dispose()
    print(f"Created a demo organisation in {args.data_dir}.")
    print(f"Recovery key (demo only): {organisation.recovery_key}")
    print(f"Demo logins are in {args.data_dir / 'demo-credentials.json'}:")
    for account in accounts:
        print(f"  {account.role:<11} {account.username:<17} {account.password}")
    return 0


def cmd_demo_code(args: argparse.Namespace) -> int:
    for account in read_credentials(args.data_dir):
        if args.username in (None, account.username):
            print(f"{account.username:<17} {pyotp.TOTP(account.totp_secret).now()}")
    return 0


def _read_recovery_key() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Recovery key: ")
    return sys.stdin.readline()


def cmd_keys_recover(args: argparse.Namespace) -> int:
    """Grant the intake key to a named member with the recovery key, when no key holder is left."""
    settings = load_settings(args.data_dir)
    database = Database.from_settings(settings)
    server_secrets = load_server_secrets(settings.secrets_dir)
    recovery_key = _read_recovery_key()
    try:
        with database.transaction() as session:
            intake_key = current_intake_key(session)
            account = session.scalars(
                select(StaffAccount).where(StaffAccount.username == args.username)
            ).first()
            if intake_key is None or account is None:
                print("daylight: no such organisation or account; nothing changed.", file=sys.stderr)
                return 1
            intake_private = recover_intake_key(intake_key, recovery_key)
            grant_intake_key(
                session,
                intake_key=intake_key,
                intake_private=intake_private,
                grantee=account,
                granted_by_id=None,
                key_integrity_key=server_secrets.key_integrity_key,
            )
            audit.record(
                session,
                audit.SYSTEM,
                "key.recover",
                object_type="account",
                object_id=account.id,
                details={"key_version": intake_key.version},
            )
    except (ValueError, DecryptionError) as exc:
        reason = "the recovery key did not open the intake key" if isinstance(exc, DecryptionError) else exc
        print(f"daylight: {reason}; nothing changed.", file=sys.stderr)
        return 1
    finally:
        database.engine.dispose()
    print(f"Granted the intake key to {args.username}. It takes effect at their next login.")
    return 0


def _read_login() -> tuple[str, str]:
    """A key holder's password and one-time code: prompted on a terminal, else two lines of stdin."""
    if sys.stdin.isatty():
        return getpass.getpass("Password: "), getpass.getpass("One-time code: ")
    return sys.stdin.readline().rstrip("\n"), sys.stdin.readline().strip()


def _read_recovery_keys(versions: Sequence[int]) -> list[str]:
    """One recovery key per version needed: prompted on a terminal, else one per line of stdin."""
    if sys.stdin.isatty():
        return [getpass.getpass(f"Recovery key of version {version}: ") for version in versions]
    return [line.strip() for line in sys.stdin if line.strip()]


def _unlock_rotation_source(
    args: argparse.Namespace,
    settings: Settings,
    server_secrets: ServerSecrets,
    database: Database,
    versions: Sequence[int],
) -> tuple[Mapping[int, sealing.PrivateKey], audit.Actor]:
    """Open the key ``versions`` `keys rotate` needs: with a lead's login, or recovery keys."""
    if args.username is None:
        recovery_keys = _read_recovery_keys(versions)
        with database.transaction() as session:
            unlocked = rotation.unlock_with_recovery_keys(session, versions, recovery_keys)
        if not unlocked:
            raise rotation.RotationRefused("the recovery key did not open the intake key")
        return unlocked, audit.SYSTEM
    password, otp = _read_login()
    # The staff login's own check (lockout, one-time code, audit), in a transaction of its own:
    # a refused attempt is counted and recorded like one at the login page.
    with database.transaction() as session:
        found = authenticate(
            session,
            username=args.username,
            password=password,
            otp=otp,
            settings=settings,
            totp_key=server_secrets.totp_key,
        )
    if found is None:
        raise rotation.RotationRefused("the login was refused")
    account, keys = found
    if not role_has(account.role, Permission.MANAGE_KEY_GRANTS):
        raise rotation.RotationRefused("only a lead rotates the intake key")
    return keys.intake, account_actor(account)


def _confirm_recipients(args: argparse.Namespace, database: Database) -> None:
    """Before a rotation starts: who will hold the new key. A member whose copy of the old key
    may have leaked must have been revoked first, or the new key goes to them as well."""
    with database.transaction() as session:
        recipients = rotation.successor_recipients(session)
    print(
        f"The new intake key will be granted to {len(recipients)} members who hold the current one: "
        f"{', '.join(recipients) or 'nobody'}.\nRevoke anyone whose copy of the key may have leaked "
        "(staff UI, Key grants) before going on.",
        flush=True,
    )
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise rotation.RotationRefused("confirm with --yes when not at a terminal")
    if input("Go on? [y/N] ").strip().lower() not in ("y", "yes"):
        raise rotation.RotationRefused("not confirmed")


def _progress_bar(done: int, total: int) -> None:
    width = 30
    filled = width * done // total if total else width
    line = f"re-sealing data keys [{'#' * filled}{'.' * (width - filled)}] {done}/{total}"
    if sys.stderr.isatty():
        print(f"\r{line}", end="" if done < total else "\n", file=sys.stderr, flush=True)
    elif done == total or (total and done * 10 // total != (done - 1) * 10 // total):
        print(line, file=sys.stderr, flush=True)  # a line per tenth when logged, not a redraw


def _print_new_recovery_key(started: rotation.Rotation) -> None:
    if started.recovery_key is None:
        print(
            f"Resuming the rotation from intake key version {started.from_version} to {started.to_version}."
        )
        return
    print(f"Created intake key version {started.to_version}.\n")
    print("NEW RECOVERY KEY (shown once; print it, store it offline, never on this server):\n")
    print(f"    {started.recovery_key}\n")
    print(
        f"The recovery key of version {started.from_version} stops working when the rotation ends.",
        flush=True,
    )


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    """A new intake key pair, every data key re-sealed to it, the old key destroyed (resumable)."""
    settings = load_settings(args.data_dir)
    server_secrets = load_server_secrets(settings.secrets_dir)
    database = Database.from_settings(settings)
    try:
        with database.transaction() as session:
            versions = rotation.versions_to_unlock(session)
        unlocked, actor = _unlock_rotation_source(args, settings, server_secrets, database, versions)
        if len(versions) == 1:  # starting; a resumed rotation made its grants when it started
            _confirm_recipients(args, database)
        report = rotation.run(
            database,
            unlocked,
            actor,
            key_integrity_key=server_secrets.key_integrity_key,
            batch_size=args.batch_size,
            on_started=_print_new_recovery_key,
            progress=_progress_bar,
        )
    except rotation.StillSealedToOldKey as exc:
        print(f"daylight: {exc}.", file=sys.stderr)
        return 1
    except rotation.RotationRefused as exc:
        print(f"daylight: {exc}; nothing changed.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndaylight: interrupted; run the same command again to resume the rotation.", file=sys.stderr)
        return 130
    except DBAPIError as exc:
        # A lost connection, a deadlock with a purge, a conflicting concurrent run: each step is
        # its own transaction, so whatever committed stays and the rest resumes.
        print(
            f"\ndaylight: the database refused a step ({type(exc.orig).__name__}); run the same "
            "command again to resume the rotation.",
            file=sys.stderr,
        )
        return 1
    finally:
        database.engine.dispose()
    counts = ", ".join(f"{count} {name}" for name, count in report.resealed.items())
    print(
        f"Rotated the intake key from version {report.from_version} to {report.to_version}: "
        f"re-sealed {counts}. Version {report.from_version} is destroyed; {report.holders} members "
        f"hold version {report.to_version} and use it from their next login."
    )
    if report.scrub_problems:
        print("daylight: copies of the old key's wraps may remain in the database files:", file=sys.stderr)
        for problem in report.scrub_problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    return 0


def cmd_accounts_invite(args: argparse.Namespace) -> int:
    """Create an account and print its one-time activation link: how an organisation gets
    its first admin, who then invites everyone else from the staff UI."""
    settings = load_settings(args.data_dir)
    database = Database.from_settings(settings)
    server_secrets = load_server_secrets(settings.secrets_dir)
    try:
        with database.transaction() as session:
            _, token = invite_account(
                session,
                username=args.username,
                role=Role(args.role),
                actor=audit.SYSTEM,
                server_secrets=server_secrets,
            )
    except UsernameTaken:
        print(f"daylight: the username {args.username} is taken; nothing changed.", file=sys.stderr)
        return 1
    print(f"Created {args.username} ({args.role}). One-time activation link, valid 24 hours;")
    print("open it on the staff app (http://HOST:8001 on loopback, or the staff onion service):\n")
    print(f"    /link/{token}\n")
    return 0


def _audit_database(args: argparse.Namespace) -> tuple[Settings, Database, ServerSecrets]:
    settings = load_settings(args.data_dir)
    return settings, Database.from_settings(settings), load_server_secrets(settings.secrets_dir)


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the log is intact; 1, naming the first bad event, otherwise."""
    if args.export is not None:
        if args.verifier_key is None and args.data_dir is None:
            print(
                "daylight: --export needs --verifier-key (or --data-dir for this server's key)",
                file=sys.stderr,
            )
            return 2
        if args.verifier_key is not None:
            name, public_key = parse_verifier_key(args.verifier_key)
        else:
            settings, _, server_secrets = _audit_database(args)
            name = settings.audit_log_origin
            public_key = audit_service.signing_key(server_secrets).public_key()
        with args.export.open(encoding="utf-8") as lines:
            report = verify_export(lines, public_key, name)
    else:
        if args.data_dir is None:
            print("daylight: audit verify needs --data-dir or --export", file=sys.stderr)
            return 2
        settings, database, server_secrets = _audit_database(args)
        with database.engine.connect() as connection:
            connection.execution_options(**{READ_ONLY_OPTION: True})
            report = audit_service.verify_database(
                connection, audit_service.signing_key(server_secrets).public_key(), settings.audit_log_origin
            )
        database.engine.dispose()
    if report.ok:
        print(
            f"ok: {report.size} events, root {report.root.hex()}, "
            f"{report.checkpoints_checked} signed checkpoints verified"
        )
        return 0
    first = f"first bad event: {report.first_bad_seq}" if report.first_bad_seq else "checkpoints are bad"
    print(f"TAMPERED: {first}", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


def cmd_audit_export(args: argparse.Namespace) -> int:
    settings, database, server_secrets = _audit_database(args)
    public_key_line = verifier_key(
        audit_service.signing_key(server_secrets).public_key(), settings.audit_log_origin
    )
    with database.transaction() as session:
        audit.record(session, audit.SYSTEM, "audit.export")
    with database.transaction() as session, _output(args.output) as sink:
        for line in audit_service.export_lines(session, public_key_line):
            sink.write(line + "\n")
    database.engine.dispose()
    return 0


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    settings, database, server_secrets = _audit_database(args)
    with database.transaction() as session:
        checkpoint = audit_service.write_checkpoint(
            session, audit_service.signing_key(server_secrets), settings.audit_log_origin
        )
        latest = checkpoint or audit_service.latest_checkpoint(session)
        print(latest.signed_note if latest else "no events yet: nothing to sign", end="" if latest else "\n")
    database.engine.dispose()
    return 0


def cmd_stations_import(args: argparse.Namespace) -> int:
    """Validate every row; show what would change; write only with --apply. Nothing on any error."""
    file_format = args.format or args.file.suffix.lstrip(".").lower()
    try:
        rows = registry.parse(args.file.read_bytes(), file_format)
    except registry.ImportRefused as exc:
        print(f"daylight: {exc.public_message}", file=sys.stderr)
        for problem in exc.fields:
            print(f"  - {problem['message']}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"daylight: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    settings = load_settings(args.data_dir)
    database = Database.from_settings(settings)
    with database.transaction() as session:
        result = registry.apply(session, rows, audit.SYSTEM) if args.apply else registry.plan(session, rows)
    database.engine.dispose()
    for row in result.created:
        print(f"  new      {row.city}, {row.country} ({row.operating_bureau}): {row.status.value}")
    for row, changes in result.updated:
        print(f"  changed  {row.city}, {row.country} ({row.operating_bureau}): {', '.join(changes)}")
    print(("imported: " if args.apply else "dry run, nothing written (add --apply): ") + result.summary())
    return 0


def cmd_stations_export(args: argparse.Namespace) -> int:
    settings = load_settings(args.data_dir)
    database = Database.from_settings(settings)
    with database.transaction() as session:
        stations = registry.all_stations(session)
        text = (
            registry.export_csv(stations) if args.format == "csv" else registry.export_json(stations) + "\n"
        )
        audit.record(session, audit.SYSTEM, "stations.export", details={"format": args.format})
    database.engine.dispose()
    with _output(args.output) as sink:
        sink.write(text)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    try:
        manifest = backup_module.backup(load_settings(args.data_dir), args.output)
    except backup_module.BackupError as exc:
        print(f"daylight: {exc}", file=sys.stderr)
        return 1
    files = manifest["files"]
    print(
        f"backed up the {manifest['database']} database and {len(files)} files "  # type: ignore[arg-type]
        f"to {args.output} (with a manifest of checksums). It holds the server's secrets: keep it offline."
    )
    from_environment = manifest["secrets_from_environment"]
    if from_environment:
        print(
            f"daylight: not in the backup, because the environment supplies them: "
            f"{', '.join(from_environment)}. Back them up yourself: a restore opens nothing "  # type: ignore[arg-type]
            f"without them.",
            file=sys.stderr,
        )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    try:
        manifest = backup_module.restore(args.source, load_settings(args.data_dir))
    except backup_module.BackupError as exc:
        print(f"daylight: {exc}", file=sys.stderr)
        return 1
    print(
        f"restored the backup of {manifest['created_on']} into {args.data_dir}; "
        f"now run: daylight audit verify --data-dir {args.data_dir}"
    )
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the deployment; exit 1 when anything fails."""
    findings = doctor.run_checks(load_settings(args.data_dir))
    for finding in findings:
        print(f"{finding.verdict.value.upper():<4}  {finding.check}: {finding.detail}")
    return 1 if any(finding.verdict is doctor.Verdict.FAIL for finding in findings) else 0


def cmd_purge(args: argparse.Namespace) -> int:
    """Crypto-shred expired tips; safe to run from cron on several nodes at once."""
    settings = load_settings(args.data_dir)
    database = Database.from_settings(settings)
    with database.transaction() as session:
        report = retention.purge_expired(session, settings, blob_storage_for(settings, database))
    database.engine.dispose()
    if report.skipped:
        print("skipped: another node is purging right now")
        return 0
    print(
        f"purged {report.rejected + report.stale_new} tips ({report.rejected} rejected over "
        f"{settings.retention_rejected_days} days, {report.stale_new} untouched in new over "
        f"{settings.retention_stale_new_days} days) and {report.files} files; their keys are destroyed"
    )
    return 0


@contextlib.contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8") as handle:
        yield handle


def cmd_serve(args: argparse.Namespace) -> int:
    configure_logging()
    print(
        f"Intake app on http://{args.host}:{args.intake_port}/ ({args.intake_workers} workers)  "
        f"staff app on http://{args.host}:{args.staff_port}/ ({args.staff_workers} workers)",
        flush=True,
    )
    serve_module.serve(
        args.data_dir,
        host=args.host,
        intake_port=args.intake_port,
        staff_port=args.staff_port,
        intake_workers=args.intake_workers,
        staff_workers=args.staff_workers,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="daylight", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--data-dir", type=_data_dir, required=True)
        return sub

    command("init", "create an organisation; prints the recovery key once").set_defaults(run=cmd_init)
    command("demo", "init plus demo accounts and tips").set_defaults(run=cmd_demo)
    code = command("demo-code", "print the current one-time code of demo accounts")
    code.add_argument("--username")
    code.set_defaults(run=cmd_demo_code)
    keys = commands.add_parser("keys", help="intake key custody").add_subparsers(
        dest="keys_command", required=True
    )
    recover = keys.add_parser("recover", help="grant the intake key with the recovery key (read from stdin)")
    recover.add_argument("--data-dir", type=_data_dir, required=True)
    recover.add_argument("--username", required=True)
    recover.set_defaults(run=cmd_keys_recover)
    rotate = keys.add_parser(
        "rotate",
        help="a new intake key, every data key re-sealed to it, the old one "
        "destroyed; resumable (recovery key, or a lead's password and "
        "one-time code, from stdin)",
    )
    rotate.add_argument("--data-dir", type=_data_dir, required=True)
    rotate.add_argument("--username", help="a lead who holds the key (default: use the recovery key)")
    rotate.add_argument(
        "--yes", action="store_true", help="grant the new key to the current holders without asking"
    )
    rotate.add_argument(
        "--batch-size",
        type=_positive_int,
        default=rotation.DEFAULT_BATCH_SIZE,
        help="data keys re-sealed per transaction",
    )
    rotate.set_defaults(run=cmd_keys_rotate)
    accounts = commands.add_parser("accounts", help="staff accounts").add_subparsers(
        dest="accounts_command", required=True
    )
    invite = accounts.add_parser("invite", help="create an account and print its activation link")
    invite.add_argument("--data-dir", type=_data_dir, required=True)
    invite.add_argument("--username", required=True)
    invite.add_argument("--role", choices=[role.value for role in Role], default=Role.ADMIN.value)
    invite.set_defaults(run=cmd_accounts_invite)
    audit_commands = commands.add_parser("audit", help="the tamper-evident audit log").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit_commands.add_parser("verify", help="check the log; exit 1 naming the first bad event")
    verify.add_argument("--data-dir", type=_data_dir)
    verify.add_argument("--export", type=Path, help="check an export file offline instead")
    verify.add_argument("--verifier-key", help="the log's verifier key (name+id+key), for --export")
    verify.set_defaults(run=cmd_audit_verify)
    export = audit_commands.add_parser("export", help="events, checkpoints and proofs as JSON Lines")
    export.add_argument("--data-dir", type=_data_dir, required=True)
    export.add_argument("--output", type=Path)
    export.set_defaults(run=cmd_audit_export)
    checkpoint = audit_commands.add_parser("checkpoint", help="sign a checkpoint now and print it")
    checkpoint.add_argument("--data-dir", type=_data_dir, required=True)
    checkpoint.set_defaults(run=cmd_audit_checkpoint)
    command("purge", "crypto-shred tips past their retention period").set_defaults(run=cmd_purge)
    command("doctor", "check a deployment and say how to fix what is wrong").set_defaults(run=cmd_doctor)
    backup_command = command("backup", "the database, secrets and files, with a manifest of checksums")
    backup_command.add_argument("--output", type=Path, required=True, help="a new directory")
    backup_command.set_defaults(run=cmd_backup)
    restore_command = command("restore", "a backup into a new data dir (and an empty database)")
    restore_command.add_argument("--from", dest="source", type=Path, required=True)
    restore_command.set_defaults(run=cmd_restore)
    stations = commands.add_parser("stations", help="the station registry").add_subparsers(
        dest="stations_command", required=True
    )
    station_import = stations.add_parser(
        "import", help="import stations from CSV or JSON (a dry run unless --apply)"
    )
    station_import.add_argument("file", type=Path)
    station_import.add_argument("--data-dir", type=_data_dir, required=True)
    station_import.add_argument(
        "--format", choices=["csv", "json"], help="default: from the file's extension"
    )
    station_import.add_argument("--apply", action="store_true", help="write the changes")
    station_import.set_defaults(run=cmd_stations_import)
    station_export = stations.add_parser("export", help="the registry as CSV or JSON")
    station_export.add_argument("--data-dir", type=_data_dir, required=True)
    station_export.add_argument("--format", choices=["csv", "json"], default="csv")
    station_export.add_argument("--output", type=Path)
    station_export.set_defaults(run=cmd_stations_export)
    serve = command("serve", "serve the intake and staff apps")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--intake-port", type=int, default=8000)
    serve.add_argument("--staff-port", type=int, default=8001)
    serve.add_argument(
        "--intake-workers",
        type=_positive_int,
        default=serve_module.default_worker_count(),
        help="intake app processes (default: one per core)",
    )
    serve.add_argument(
        "--staff-workers",
        type=_positive_int,
        default=serve_module.default_worker_count(),
        help="staff app processes (default: one per core)",
    )
    serve.set_defaults(run=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Everything Daylight writes (database, blobs, secrets, credentials) is for
    # its own user only, whatever umask the operator's shell had.
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code
