"""`daylight audit verify`, `export` and `checkpoint`: the tamper-evident audit log."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from app.audit_log import events as audit
from app.audit_log import service as audit_service
from app.audit_log.checkpoint import parse_verifier_key, verifier_key
from app.audit_log.export import export_lines
from app.audit_log.offline import verify_export
from app.audit_log.verification import verify_database
from app.entrypoints.cli.common import (
    Commands,
    Deployment,
    _data_dir,
    add_command,
    add_group,
    open_deployment,
    output,
)
from app.kit.db import READ_ONLY_OPTION


def _public_key(deployment: Deployment) -> Ed25519PublicKey:
    return audit_service.signing_key(deployment.server_secrets).public_key()


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
            with open_deployment(args.data_dir) as deployment:
                name, public_key = deployment.settings.audit_log_origin, _public_key(deployment)
        with args.export.open(encoding="utf-8") as lines:
            report = verify_export(lines, public_key, name)
    else:
        if args.data_dir is None:
            print("daylight: audit verify needs --data-dir or --export", file=sys.stderr)
            return 2
        with open_deployment(args.data_dir) as deployment:
            public_key = _public_key(deployment)
            with deployment.database.engine.connect() as connection:
                connection.execution_options(**{READ_ONLY_OPTION: True})
                report = verify_database(connection, public_key, deployment.settings.audit_log_origin)
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
    with open_deployment(args.data_dir) as deployment:
        public_key_line = verifier_key(_public_key(deployment), deployment.settings.audit_log_origin)
        with deployment.database.transaction() as session:
            audit.record(session, audit.SYSTEM, "audit.export")
        with deployment.database.transaction() as session, output(args.output) as sink:
            for line in export_lines(session, public_key_line):
                sink.write(line + "\n")
    return 0


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    with open_deployment(args.data_dir) as deployment:
        signing_key = audit_service.signing_key(deployment.server_secrets)
        with deployment.database.transaction() as session:
            checkpoint = audit_service.write_checkpoint(
                session, signing_key, deployment.settings.audit_log_origin
            )
            latest = checkpoint or audit_service.latest_checkpoint(session)
            print(
                latest.signed_note if latest else "no events yet: nothing to sign", end="" if latest else "\n"
            )
    return 0


def register(commands: Commands) -> None:
    audit_commands = add_group(commands, "audit", "the tamper-evident audit log")
    verify = audit_commands.add_parser("verify", help="check the log; exit 1 naming the first bad event")
    verify.add_argument("--data-dir", type=_data_dir)
    verify.add_argument("--export", type=Path, help="check an export file offline instead")
    verify.add_argument("--verifier-key", help="the log's verifier key (name+id+key), for --export")
    verify.set_defaults(run=cmd_audit_verify)
    export = add_command(audit_commands, "export", "events, checkpoints and proofs as JSON Lines")
    export.add_argument("--output", type=Path)
    export.set_defaults(run=cmd_audit_export)
    checkpoint = add_command(audit_commands, "checkpoint", "sign a checkpoint now and print it")
    checkpoint.set_defaults(run=cmd_audit_checkpoint)
