"""`daylight purge`, `doctor`, `backup` and `restore`: keeping a deployment healthy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.entrypoints import backup as backup_module
from app.entrypoints import doctor
from app.entrypoints.cli.common import Commands, add_command, open_deployment
from app.kit.blobs import blob_storage_for
from app.kit.config import load_settings
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


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check the deployment; exit 1 when anything fails."""
    findings = doctor.run_checks(load_settings(args.data_dir))
    for finding in findings:
        print(f"{finding.verdict.value.upper():<4}  {finding.check}: {finding.detail}")
    return 1 if any(finding.verdict is doctor.Verdict.FAIL for finding in findings) else 0


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


def register(commands: Commands) -> None:
    add_command(commands, "purge", "crypto-shred tips past their retention period").set_defaults(
        run=cmd_purge
    )
    add_command(commands, "doctor", "check a deployment and say how to fix what is wrong").set_defaults(
        run=cmd_doctor
    )
    backup = add_command(commands, "backup", "the database, secrets and files, with a manifest of checksums")
    backup.add_argument("--output", type=Path, required=True, help="a new directory")
    backup.set_defaults(run=cmd_backup)
    restore = add_command(commands, "restore", "a backup into a new data dir (and an empty database)")
    restore.add_argument("--from", dest="source", type=Path, required=True)
    restore.set_defaults(run=cmd_restore)
