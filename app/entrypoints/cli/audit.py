"""`daylight audit …`: verify, export, sign, prove one event, and the witnesses of the log."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import uuid
from pathlib import Path

from app.audit_log import events as audit
from app.audit_log.assessment import assess_log
from app.audit_log.checkpoint import CheckpointError, VerifierKey, parse_verifier_key, verifier_key
from app.audit_log.cosignature import WitnessKey, generate_witness_signer, parse_witness_verifier_key
from app.audit_log.evidence import verify_event_proof_text
from app.audit_log.export import export_lines
from app.audit_log.offline import verify_export
from app.audit_log.proofs import ProofUnavailable, prove_event
from app.audit_log.service import latest_checkpoint, signing_key
from app.audit_log.signer import CheckpointSigner, SignerRun, local_signer, log_verifier
from app.audit_log.witness import load_state
from app.audit_log.witnesses import (
    WitnessRegistrationError,
    register_witness,
    registered_witnesses,
    revoke_witness,
    witnessing,
)
from app.entrypoints.cli import witness as witness_client
from app.entrypoints.cli.common import (
    Commands,
    Deployment,
    _data_dir,
    add_command,
    add_group,
    open_deployment,
    output,
)
from app.kit.config import load_settings
from app.kit.db import READ_ONLY_OPTION, Database
from app.kit.server_secrets import ServerSecrets, read_server_secret


def _log_key(deployment: Deployment) -> VerifierKey:
    return log_verifier(deployment.settings, deployment.server_secrets)


def _witness_keys(args: argparse.Namespace) -> list[WitnessKey]:
    return [parse_witness_verifier_key(text) for text in args.witness_key or []]


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 when the log is intact and signed; 1, naming the first bad event, otherwise."""
    try:
        if args.proof is not None:
            return _verify_proof(args)
        if args.export is not None:
            return _verify_export(args)
    except CheckpointError as exc:
        print(f"daylight: {exc}", file=sys.stderr)
        return 2
    if args.data_dir is None:
        print("daylight: audit verify needs --data-dir, --export or --proof", file=sys.stderr)
        return 2
    # Never signs (sign_checkpoint=False): a verifier that signed the tail it found would
    # bless an edit made while the server was stopped.
    with open_deployment(args.data_dir, sign_checkpoint=False) as deployment:
        settings = deployment.settings
        key = _log_key(deployment)
        with deployment.database.transaction() as session:
            session.connection(execution_options={READ_ONLY_OPTION: True})
            trusted, forged = registered_witnesses(session, deployment.server_secrets.key_integrity_key)
            assessment = assess_log(
                session,
                key,
                max_unsigned=dt.timedelta(seconds=settings.audit_max_unsigned_seconds),
                # Keys named on the command line are pinned by the auditor; the registered
                # ones count only with their MAC (a database writer cannot add one).
                witness_keys=_witness_keys(args) or [witness.key for witness in trusted],
                witnesses_required=settings.audit_witnesses_required,
                signer_memory=load_state(settings.audit_signer_state_path),
            )
            session.rollback()
    for row in forged:
        print(f"  ! witness registration {row.name!r} was not made by this server: ignored", file=sys.stderr)
    if assessment.ok:
        print(f"ok: {assessment.summary()}")
        return 0
    report = assessment.report
    first = f"first bad event: {report.first_bad_seq}" if report.first_bad_seq else "the log is not covered"
    if not report.ok and not report.first_bad_seq:
        first = "checkpoints are bad"
    print(f"TAMPERED: {first}" if not report.ok else f"UNSIGNED: {first}", file=sys.stderr)
    for problem in assessment.all_problems:
        print(f"  - {problem}", file=sys.stderr)
    print(f"  ({assessment.summary()})", file=sys.stderr)
    return 1


def _verify_export(args: argparse.Namespace) -> int:
    if args.verifier_key is None and args.data_dir is None:
        print(
            "daylight: --export needs --verifier-key (or --data-dir for this server's key)", file=sys.stderr
        )
        return 2
    if args.verifier_key is not None:
        name, public_key = parse_verifier_key(args.verifier_key)
    else:
        with open_deployment(args.data_dir, sign_checkpoint=False) as deployment:
            name, public_key = _log_key(deployment)
    with args.export.open(encoding="utf-8") as lines:
        report = verify_export(lines, public_key, name)
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


def _verify_proof(args: argparse.Namespace) -> int:
    """An event proof, checked with nothing but the file and the keys the checker trusts."""
    if args.verifier_key is None:
        print("daylight: --proof needs --verifier-key (the log's key)", file=sys.stderr)
        return 2
    log_key = parse_verifier_key(args.verifier_key)
    witness_keys = _witness_keys(args)
    required = len(witness_keys) if args.witnesses_required is None else args.witnesses_required
    try:
        text = args.proof.read_bytes()
    except OSError as exc:
        print(f"daylight: cannot read {args.proof}: {exc.strerror}", file=sys.stderr)
        return 2
    if not 0 <= required <= len(witness_keys):
        print("daylight: --witnesses-required is more than the --witness-key given", file=sys.stderr)
        return 2
    report = verify_event_proof_text(text, log_key, witness_keys, required)
    if report.ok:
        witnessed = ", ".join(report.witnessed_by) or "no witness required"
        print(f"ok: event {report.seq} is in the log at size {report.tree_size}; witnessed by: {witnessed}")
        return 0
    print("INVALID: the event proof does not hold", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    return 1


def cmd_audit_export(args: argparse.Namespace) -> int:
    with open_deployment(args.data_dir) as deployment:
        public_key_line = verifier_key(_log_key(deployment).public_key, deployment.settings.audit_log_origin)
        with deployment.database.transaction() as session:
            audit.record(session, audit.SYSTEM, "audit.export")
        _sign_now(deployment)
        with deployment.database.transaction() as session, output(args.output) as sink:
            for line in export_lines(session, public_key_line):
                sink.write(line + "\n")
    return 0


def _sign_now(deployment: Deployment) -> bool:
    """Sign over every event so far with this host's key; False (said on stderr) when refused."""
    signer = local_signer(deployment.settings, deployment.server_secrets)
    if signer is None:
        return True  # the signer on its own host signs within seconds
    run = SignerRun(signer, deployment.database)
    run.sign_now()
    if run.last_refusal is not None:
        print(f"daylight: AUDIT ALERT: checkpoint refused: {run.last_refusal}", file=sys.stderr)
        return False
    return True


def cmd_audit_checkpoint(args: argparse.Namespace) -> int:
    with open_deployment(args.data_dir) as deployment:
        if local_signer(deployment.settings, deployment.server_secrets) is None:
            print("daylight: this host does not hold the audit signing key", file=sys.stderr)
            return 2
        if not _sign_now(deployment):
            return 1
        with deployment.database.transaction() as session:
            latest = latest_checkpoint(session)
            print(
                latest.signed_note if latest else "no events yet: nothing to sign", end="" if latest else "\n"
            )
    return 0


def cmd_audit_signer(args: argparse.Namespace) -> int:
    """The checkpoint signer on a host of its own: it needs the database URL, the signing key
    (DAYLIGHT_SECRET_AUDIT_SIGNING_KEY[_FILE] or the data dir's secrets) and a data dir for its
    memory, and nothing else of the server's: no other secret, no tip, no staff session."""
    settings = load_settings(args.data_dir)
    value, _ = read_server_secret("audit_signing_key", settings.secrets_dir)
    signer = CheckpointSigner(
        signing_key(ServerSecrets(audit_signing_key=value)),
        settings.audit_log_origin,
        settings.audit_signer_state_path,
    )
    database = Database.from_settings(settings)
    run = SignerRun(signer, database)
    print(f"signing for {signer.verifier_key}", flush=True)
    try:
        while True:
            run.sign_if_due()
            if args.once:
                return 0 if run.last_refusal is None else 1
            time.sleep(settings.audit_checkpoint_delay_seconds)
    except KeyboardInterrupt:
        return 0
    finally:
        database.engine.dispose()


def cmd_audit_prove(args: argparse.Namespace) -> int:
    with open_deployment(args.data_dir) as deployment:
        key = _log_key(deployment)
        with deployment.database.transaction() as session:
            trusted, _ = registered_witnesses(session, deployment.server_secrets.key_integrity_key)
            try:
                document = prove_event(
                    session,
                    args.seq,
                    key,
                    [witness.key for witness in trusted],
                    deployment.settings.audit_witnesses_required,
                )
            except ProofUnavailable as exc:
                print(f"daylight: {exc}", file=sys.stderr)
                return 1
        with output(args.output) as sink:
            sink.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return 0


def cmd_witness_keygen(args: argparse.Namespace) -> int:
    """A witness's Ed25519 key pair: the private key only to the file (0600), never printed."""
    try:
        private_text, public_text = generate_witness_signer(args.name)
    except CheckpointError as exc:
        print(f"daylight: {exc}", file=sys.stderr)
        return 2
    try:
        with args.key_file.open("x", encoding="utf-8") as handle:
            handle.write(private_text + "\n")
    except FileExistsError:
        print(f"daylight: {args.key_file} exists; a witness key is never overwritten", file=sys.stderr)
        return 1
    args.key_file.chmod(0o600)
    print(public_text)
    return 0


def cmd_witnesses_add(args: argparse.Namespace) -> int:
    with open_deployment(args.data_dir) as deployment:
        try:
            with deployment.database.transaction() as session:
                witness, token = register_witness(
                    session,
                    verifier_key=args.verifier_key,
                    integrity_key=deployment.server_secrets.key_integrity_key,
                    registered_by=None,
                )
                audit.record(
                    session, audit.SYSTEM, "audit.witness_add", object_type="witness", object_id=witness.id
                )
        except WitnessRegistrationError as exc:
            print(f"daylight: {exc}", file=sys.stderr)
            return 1
    print(f"Registered witness {witness.name}. Its token, shown once (give it to the witness's operator):\n")
    print(f"    {token}\n")
    return 0


def cmd_witnesses_list(args: argparse.Namespace) -> int:
    with open_deployment(args.data_dir, sign_checkpoint=False) as deployment:
        key = _log_key(deployment)
        with deployment.database.transaction() as session:
            trusted, forged = registered_witnesses(
                session, deployment.server_secrets.key_integrity_key, include_revoked=True
            )
            seen = witnessing(
                session, key, [w.key for w in trusted], deployment.settings.audit_witnesses_required
            )
            for witness in trusted:
                state = (
                    "revoked"
                    if witness.row.revoked_at
                    else f"last cosigned {seen.last_cosigned.get(witness.row.name, '-')}"
                )
                print(f"{witness.row.id}  {witness.row.verifier_key}  {state}")
            for row in forged:
                print(f"{row.id}  {row.verifier_key}  NOT REGISTERED BY THIS SERVER (ignored)")
            print(f"witnessed up to size {seen.witnessed_size} ({seen.required} cosignature(s) required)")
    return 0


def cmd_witnesses_revoke(args: argparse.Namespace) -> int:
    with open_deployment(args.data_dir) as deployment, deployment.database.transaction() as session:
        if revoke_witness(session, args.id) is None:
            print("daylight: no such witness (or already revoked)", file=sys.stderr)
            return 1
        audit.record(session, audit.SYSTEM, "audit.witness_revoke", object_type="witness", object_id=args.id)
    return 0


def register(commands: Commands) -> None:
    audit_commands = add_group(commands, "audit", "the tamper-evident audit log")
    verify = audit_commands.add_parser(
        "verify", help="check the log (or an export, or one event's proof); exit 1 naming what is wrong"
    )
    verify.add_argument("--data-dir", type=_data_dir)
    verify.add_argument("--export", type=Path, help="check an export file offline instead")
    verify.add_argument("--proof", type=Path, help="check one event's proof (`audit prove`) offline instead")
    verify.add_argument(
        "--verifier-key", help="the log's verifier key (name+id+key), for --export and --proof"
    )
    verify.add_argument(
        "--witness-key", action="append", help="a witness's verifier key to require (repeat for several)"
    )
    verify.add_argument(
        "--witnesses-required",
        type=int,
        help="with --proof: how many of the --witness-key witnesses must have cosigned (default: all)",
    )
    verify.set_defaults(run=cmd_audit_verify)
    export = add_command(audit_commands, "export", "events, checkpoints and proofs as JSON Lines")
    export.add_argument("--output", type=Path)
    export.set_defaults(run=cmd_audit_export)
    checkpoint = add_command(audit_commands, "checkpoint", "sign a checkpoint now and print it")
    checkpoint.set_defaults(run=cmd_audit_checkpoint)
    signer = add_command(audit_commands, "signer", "run the checkpoint signer (on a host of its own)")
    signer.add_argument("--once", action="store_true", help="sign what is new and exit")
    signer.set_defaults(run=cmd_audit_signer)
    prove = add_command(
        audit_commands, "prove", "one event with its inclusion proof and witnessed checkpoint"
    )
    prove.add_argument("--seq", type=int, required=True)
    prove.add_argument("--output", type=Path)
    prove.set_defaults(run=cmd_audit_prove)
    witness_client.register(audit_commands)
    keygen = audit_commands.add_parser("witness-keygen", help="make a witness key pair (no server needed)")
    keygen.add_argument("--name", required=True, help="the witness's name, e.g. auditor.example.org/witness")
    keygen.add_argument("--key-file", type=Path, required=True, help="where to write the private key")
    keygen.set_defaults(run=cmd_witness_keygen)
    witnesses = audit_commands.add_parser(
        "witnesses", help="the witnesses this server accepts"
    ).add_subparsers(dest="witnesses_command", required=True)
    add = add_command(witnesses, "add", "register a witness by its verifier key; prints its token once")
    add.add_argument("--verifier-key", required=True)
    add.set_defaults(run=cmd_witnesses_add)
    listing = add_command(witnesses, "list", "the registered witnesses and what they last cosigned")
    listing.set_defaults(run=cmd_witnesses_list)
    revoke = add_command(witnesses, "revoke", "stop accepting a witness's cosignatures")
    revoke.add_argument("--id", type=uuid.UUID, required=True)
    revoke.set_defaults(run=cmd_witnesses_revoke)
