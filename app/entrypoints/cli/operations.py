"""`daylight purge`, `doctor`, `backup`, `backup-keygen` and `restore`: keeping a deployment healthy."""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from app.entrypoints import backup as backup_module
from app.entrypoints import doctor
from app.entrypoints.cli.common import Commands, add_command, open_deployment
from app.kit.blobs import blob_storage_for
from app.kit.config import load_settings
from app.notify.sender import NotificationSender
from app.triage import retention


def cmd_purge(args: argparse.Namespace) -> int:
    """Crypto-shred expired tips; safe to run from cron on several nodes at once."""
    with open_deployment(args.data_dir) as deployment, deployment.database.transaction() as session:
        settings = deployment.settings
        report = retention.purge_expired(session, settings, blob_storage_for(settings, deployment.database))
    if report.skipped:
        print("skipped: another node is purging right now")
        return 0
    print(
        f"purged {report.rejected + report.stale_new} tips ({report.rejected} rejected over "
        f"{settings.retention_rejected_days} days, {report.stale_new} untouched in new over "
        f"{settings.retention_stale_new_days} days) and {report.files} files; their keys are destroyed"
    )
    return 0


def cmd_notify(args: argparse.Namespace) -> int:
    """Deliver pending notices once (for a cron job or systemd timer); safe beside `serve`."""
    with open_deployment(args.data_dir) as deployment:
        settings = deployment.settings
        try:
            sender = NotificationSender(
                deployment.database, settings, deployment.server_secrets.key_integrity_key
            )
        except ValueError as refusal:  # the mail server's URL; the message never repeats it
            print(f"daylight: smtp_url: {refusal}", file=sys.stderr)
            return 2
        report = sender.run_once()
    if settings.smtp_url is None:
        print("notify: no mail server is configured (smtp_url): notices go to the webhook only, if set")
    print(
        f"notify: {report.events} events and {report.reminders} reminders queued; "
        f"{report.sent} notices sent, {report.failed} failed (tried again later), {report.dropped} dropped"
    )
    return 1 if report.failed else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the deployment; exit 1 when anything fails."""
    findings = doctor.run_checks(load_settings(args.data_dir))
    for finding in findings:
        print(f"{finding.verdict.value.upper():<4}  {finding.check}: {finding.detail}")
    return 1 if any(finding.verdict is doctor.Verdict.FAIL for finding in findings) else 0


PLAINTEXT_SECRETS_WARNING = (
    "daylight: WARNING: this backup holds the server's secrets in clear (secrets/), beside the "
    "database: anyone with it and the database (both are in it) can mint staff one-time codes, "
    "match a seized receipt to its report, forge the MACs that guard public keys and re-sign a "
    "rewritten audit log. Keep it as you keep the server, or use --encrypt-to: make a backup key "
    "pair on an offline machine (`daylight backup-keygen --out DIR`), copy daylight-backup.pub "
    "here and run `daylight backup --encrypt-to daylight-backup.pub ...`."
)


def cmd_backup(args: argparse.Namespace) -> int:
    settings = load_settings(args.data_dir)
    try:
        if args.encrypt_to is not None:
            public_key = backup_module.read_public_key(args.encrypt_to)
            manifest = backup_module.encrypted_backup(settings, args.output, public_key)
        else:
            manifest = backup_module.backup(settings, args.output)
    except backup_module.BackupError as exc:
        print(f"daylight: {exc}", file=sys.stderr)
        return 1
    files = manifest["files"]
    assert isinstance(files, dict)  # noqa: S101 - backup() writes it
    summary = f"backed up the {manifest['database']} database and {len(files)} files to {args.output}"
    if args.encrypt_to is not None:
        print(
            f"{summary}, encrypted to the backup key with fingerprint "
            f"{backup_module.fingerprint(public_key)}: only that key, kept offline, opens it."
        )
    else:
        print(f"{summary} (with a manifest of checksums).")
        if any(name.startswith(f"{settings.secrets_dir.name}/") for name in files):
            print(PLAINTEXT_SECRETS_WARNING, file=sys.stderr)
    from_environment = manifest["secrets_from_environment"]
    if from_environment:
        print(
            f"daylight: not in the backup, because the environment supplies them: "
            f"{', '.join(from_environment)}. Back them up yourself: a restore opens nothing "  # type: ignore[arg-type]
            f"without them.",
            file=sys.stderr,
        )
    return 0


def cmd_backup_keygen(args: argparse.Namespace) -> int:
    """A backup key pair, on the operator's offline machine."""
    try:
        private_path, public_path, fingerprint = backup_module.write_key_pair(args.out)
    except (backup_module.BackupError, OSError) as exc:
        print(f"daylight: {exc}", file=sys.stderr)
        return 1
    print(
        f"Wrote the backup key {private_path} (mode 0600) and its public key {public_path}.\n"
        f"Fingerprint: {fingerprint}\n"
        f"Keep {private_path.name} here, offline (a copy on paper works too: it is one line to type), "
        f"never on the server.\n"
        f"Copy {public_path.name} to the server and back up with:\n"
        f"  daylight backup --data-dir DIR --output FILE --encrypt-to {public_path.name}\n"
        f"Restore with:\n"
        f"  daylight restore --from FILE --data-dir NEW_DIR < {private_path.name}"
    )
    return 0


def _read_backup_key(header: backup_module.EncryptedHeader) -> str:
    """The backup key from stdin: asked for at a terminal, else all of stdin (the key file)."""
    if sys.stdin.isatty():
        print(
            f"This backup is encrypted to the backup key with fingerprint {header.fingerprint}. "
            f"Type or paste that key (the last line of {backup_module.PRIVATE_KEY_FILE}); "
            "it is not shown.",
            file=sys.stderr,
        )
        try:
            return getpass.getpass("Backup key (not shown): ", stream=sys.stderr)
        except EOFError:
            raise backup_module.BackupError("No backup key was given; nothing was restored.") from None
    return backup_module.backup_key_from_text(sys.stdin.read())


def cmd_restore(args: argparse.Namespace) -> int:
    settings = load_settings(args.data_dir)
    try:
        if backup_module.is_encrypted_backup(args.source):
            # Refused before the key is asked for, when it would be refused after.
            backup_module.require_empty_data_dir(settings)
            header = backup_module.read_encrypted_header(args.source)
            manifest = backup_module.restore_encrypted(args.source, settings, _read_backup_key(header))
        else:
            manifest = backup_module.restore(args.source, settings)
    except backup_module.BackupError as exc:
        print(f"daylight: {exc}", file=sys.stderr)
        return 1
    print(
        f"restored the backup of {manifest['created_on']} into {args.data_dir}; "
        f"now run: daylight audit verify --data-dir {args.data_dir}"
    )
    return 0


def register(commands: Commands) -> None:
    add_command(commands, "purge", "crypto-shred tips past their retention period").set_defaults(
        run=cmd_purge
    )
    add_command(commands, "notify", "deliver pending content-free notifications once").set_defaults(
        run=cmd_notify
    )
    add_command(commands, "doctor", "check a deployment and say how to fix what is wrong").set_defaults(
        run=cmd_doctor
    )
    backup = add_command(commands, "backup", "the database, secrets and files, with a manifest of checksums")
    backup.add_argument(
        "--output", type=Path, required=True, help="a new directory (with --encrypt-to: a new file)"
    )
    backup.add_argument(
        "--encrypt-to",
        type=Path,
        metavar="PUBLIC_KEY_FILE",
        help="encrypt the backup, as one file, to this backup public key (from `daylight backup-keygen`)",
    )
    backup.set_defaults(run=cmd_backup)
    keygen = commands.add_parser(
        "backup-keygen", help="a backup key pair for `backup --encrypt-to`; run it on an offline machine"
    )
    keygen.add_argument(
        "--out",
        type=Path,
        required=True,
        help=f"where to write {backup_module.PRIVATE_KEY_FILE} (0600) and {backup_module.PUBLIC_KEY_FILE}",
    )
    keygen.set_defaults(run=cmd_backup_keygen)
    restore = add_command(commands, "restore", "a backup into a new data dir (and an empty database)")
    restore.add_argument(
        "--from",
        dest="source",
        type=Path,
        required=True,
        help="a backup directory, or an encrypted backup file (its backup key is read from stdin)",
    )
    restore.set_defaults(run=cmd_restore)
