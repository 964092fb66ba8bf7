"""`daylight referral …`: the recipient's side of a referral bundle, offline.

A partner organisation or police unit runs these on its own machine, with nothing of the server's: no
data dir, no database, no DAYLIGHT_* settings. It needs the bundle, its private key, and the keys it
was given to trust (the audit log's verifier key, and the witnesses' keys it requires).

Exit codes: 0 done (verified, opened); 1 the bundle does not verify (the problems are listed), or
keygen would overwrite a key file; 2 a usage mistake, a file that cannot be read, an output folder
that cannot be used.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import stat
import sys
import unicodedata
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.audit_log.checkpoint import CheckpointError, VerifierKey, parse_verifier_key
from app.audit_log.cosignature import WitnessKey, parse_witness_verifier_key
from app.crypto import sealing
from app.crypto.errors import DecryptionError
from app.entrypoints.cli.common import Commands, _data_dir, add_group, open_deployment
from app.kit.blobs import blob_storage_for
from app.kit.errors import AppError
from app.referrals import keys
from app.referrals.bundle import (
    MANIFEST_FILE,
    NOT_A_RECIPIENT,
    PROOF_FILE,
    BundleOutputError,
    BundleReport,
    ItemChangedWhileRead,
    open_bundle,
    read_bundle,
    verify_bundle,
)
from app.referrals.importing import import_referral, member_for_import

# Shown in place of characters that could move the cursor, rewrite the terminal or reverse text.
_REPLACEMENT = "\ufffd"
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class _UsageError(Exception):
    """A mistake in the command line or an unreadable input: exit 2 with this message."""


def _shown(value: object, *, limit: int = 200, lines: bool = False) -> str:
    """Text from a bundle, safe to print: it is authenticated, but its author may not be a friend of the
    terminal (escape sequences, bidirectional overrides)."""
    text = value if isinstance(value, str) else repr(value)
    kept = []
    for character in text[:limit]:
        if lines and character == "\n":
            kept.append(character)
        elif character in _BIDI_CONTROLS or unicodedata.category(character) in ("Cc", "Cs", "Co", "Cn"):
            kept.append(_REPLACEMENT)
        else:
            kept.append(character)
    return "".join(kept) + ("…" if len(text) > limit else "")


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} B"
    value = count / 1000
    for unit in ("KB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def _trusted_keys(args: argparse.Namespace) -> tuple[VerifierKey, list[WitnessKey], int]:
    try:
        log_key = parse_verifier_key(args.verifier_key)
        witness_keys = [parse_witness_verifier_key(text) for text in args.witness_key or []]
    except CheckpointError as exc:
        raise _UsageError(str(exc)) from None
    required = len(witness_keys) if args.witnesses_required is None else args.witnesses_required
    if not 0 <= required <= len(witness_keys):
        raise _UsageError("--witnesses-required must be from 0 to the number of --witness-key given")
    if len({key.name for key in witness_keys}) != len(witness_keys) or len(
        {key.public_key.public_bytes_raw() for key in witness_keys}
    ) != len(witness_keys):
        raise _UsageError("each --witness-key must be a different witness, with its own name and key")
    return log_key, witness_keys, required


def _private_key(path: Path) -> sealing.PrivateKey:
    try:
        private_key = keys.read_private_key(path)
        mode = path.stat().st_mode
    except OSError as exc:
        raise _UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
    except keys.RecipientKeyError as exc:
        raise _UsageError(f"{path}: {exc}") from None
    if os.name == "posix" and stat.S_IMODE(mode) & 0o077:
        print(f"daylight: warning: {path} can be read by other users of this machine", file=sys.stderr)
    return private_key


def _problems(report: BundleReport, private_key: sealing.PrivateKey) -> int:
    print("INVALID: the referral bundle does not verify", file=sys.stderr)
    for problem in report.problems:
        print(f"  - {problem}", file=sys.stderr)
    if report.problems == [NOT_A_RECIPIENT]:
        print(f"  this key's fingerprint:  {keys.fingerprint(private_key.public_key())}", file=sys.stderr)
        for fingerprint in report.recipients:
            print(f"  sealed to the key:       {fingerprint}", file=sys.stderr)
    return 1


def _when(report: BundleReport) -> str:
    signed = (
        ""
        if report.checkpoint_time is None
        else ", in the log's checkpoint signed "
        + dt.datetime.fromtimestamp(report.checkpoint_time, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    )
    return f"{report.approved_at}{signed}"


def _witnessed(report: BundleReport) -> str:
    return ", ".join(report.witnessed_by) or "no witness required"


def cmd_referral_keygen(args: argparse.Namespace) -> int:
    """A recipient's key pair: the private key to a new 0600 file, the public key to a file to hand over."""
    try:
        keys.check_name(args.name)
    except keys.RecipientKeyError as exc:
        print(f"daylight: {exc}", file=sys.stderr)
        return 2
    for path in (args.private_key, args.public_key):
        if os.path.lexists(path):
            print(f"daylight: {path} exists; a key file is never overwritten", file=sys.stderr)
            return 1
    private_key, _ = keys.generate_recipient_key(args.name)
    try:
        keys.write_private_key(args.private_key, private_key)
    except FileExistsError:
        print(f"daylight: {args.private_key} exists; a key file is never overwritten", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"daylight: cannot write {args.private_key}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        keys.write_public_key(args.public_key, args.name, private_key.public_key())
    except OSError as exc:
        args.private_key.unlink()  # a private key whose public half was never written helps no one
        print(f"daylight: cannot write {args.public_key}: {exc.strerror or exc}", file=sys.stderr)
        return 1 if isinstance(exc, FileExistsError) else 2
    print(f"fingerprint: {keys.fingerprint(private_key.public_key())}")
    print(
        f"Give {args.public_key} to the organisation that will send you referrals, and compare this "
        "fingerprint with them over another channel (a call, in person) before they use it.\n"
        f"Keep {args.private_key} secret and backed up: whoever holds it opens the bundles sealed to you, "
        "and without it they cannot be opened."
    )
    return 0


def cmd_referral_verify(args: argparse.Namespace) -> int:
    try:
        log_key, witness_keys, required = _trusted_keys(args)
        private_key = _private_key(args.key)
        report = verify_bundle(
            args.bundle, private_key, log_key=log_key, witness_keys=witness_keys, witnesses_required=required
        )
    except _UsageError as exc:
        print(f"daylight: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"daylight: cannot read {args.bundle}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not report.ok:
        return _problems(report, private_key)
    total = sum(item.size for item in report.items)
    print(
        f"ok: referral {report.referral_id}, approved {report.approved_at} in the audit log {report.origin}; "
        f"{len(report.items)} items, {_size(total)}; witnessed by: {_witnessed(report)}"
    )
    return 0


def cmd_referral_open(args: argparse.Namespace) -> int:
    try:
        log_key, witness_keys, required = _trusted_keys(args)
        private_key = _private_key(args.key)
        report = open_bundle(
            args.bundle,
            private_key,
            args.output,
            log_key=log_key,
            witness_keys=witness_keys,
            witnesses_required=required,
        )
    except (_UsageError, BundleOutputError) as exc:
        print(f"daylight: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"daylight: cannot read {args.bundle}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if not report.ok:
        return _problems(report, private_key)
    _print_summary(report, args.output)
    return 0


def cmd_referral_import(args: argparse.Namespace) -> int:
    """A referral from another organisation, verified, then imported as a new case here
    (app.referrals.importing): its items go straight into this data dir's encrypted store."""
    try:
        log_key, witness_keys, required = _trusted_keys(args)
        private_key = _private_key(args.key)
    except _UsageError as exc:
        print(f"daylight: {exc}", file=sys.stderr)
        return 2
    with open_deployment(args.data_dir) as deployment:
        blobs = blob_storage_for(deployment.settings, deployment.database)
        try:
            with read_bundle(
                args.bundle,
                private_key,
                log_key=log_key,
                witness_keys=witness_keys,
                witnesses_required=required,
            ) as (report, items):
                if not report.ok:
                    return _problems(report, private_key)
                with deployment.database.transaction() as session:
                    member = member_for_import(session, args.member)
                    case = import_referral(
                        session,
                        report,
                        items,
                        member=member,
                        settings=deployment.settings,
                        server_secrets=deployment.server_secrets,
                        blobs=blobs,
                    )
                    case_ref, reports = case.ref, report.referral_id
        except OSError as exc:
            print(f"daylight: cannot read {args.bundle}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except AppError as exc:
            # Refused here (not a key holder; a file larger than this service accepts): nothing kept.
            print(f"daylight: {exc.public_message}; nothing was imported", file=sys.stderr)
            return 2
        except ValidationError:
            print(
                "daylight: a report in the bundle is not one this service accepts; nothing was imported",
                file=sys.stderr,
            )
            return 1
        except (DecryptionError, ItemChangedWhileRead):
            print("INVALID: an item changed while it was read; nothing was imported", file=sys.stderr)
            return 1
    print(f"imported referral {reports} from {_shown(report.origin)} as case {case_ref}")
    return 0


def _print_summary(report: BundleReport, output: Path) -> None:
    """What the recipient reads first. The manifest's optional keys are shown when present, each read
    defensively: the bundle verified, but their shape is the sender's choice."""
    manifest: dict[str, Any] = report.manifest or {}
    print(f"ok: referral {report.referral_id} verified and opened into {output}")
    print(f"  from the audit log:  {report.origin}")
    print(f"  approved:            {_when(report)}")
    print(f"  witnessed by:        {_witnessed(report)}")
    case = manifest.get("case")
    if isinstance(case, dict) and case.get("ref") is not None:
        title = f" — {_shown(case['title'])}" if isinstance(case.get("title"), str) else ""
        print(f"  case:                {_shown(case['ref'], limit=60)}{title}")
    people = [
        f"{label} {_shown(manifest[key], limit=60)}"
        for key, label in (("proposed_by", "proposed by"), ("approved_by", "approved by"))
        if isinstance(manifest.get(key), str)
    ]
    if people:
        print(f"  people:              {', '.join(people)}")
    total = sum(item.size for item in report.items)
    print(f"  items ({len(report.items)}, {_size(total)}):")
    for item in report.items:
        print(f"    {_size(item.size):>10}  {item.path}")
    redactions = manifest.get("redactions")
    if isinstance(redactions, list):
        print(f"  redactions:          {len(redactions)}")
    links = manifest.get("station_links")
    if isinstance(links, list) and links:
        print("  station links:")
        for link in links[:50]:
            if isinstance(link, dict):
                text = ", ".join(f"{_shown(key, limit=40)}: {_shown(value)}" for key, value in link.items())
            else:
                text = _shown(link)
            print(f"    - {text}")
        if len(links) > 50:
            print(f"    … and {len(links) - 50} more (see {MANIFEST_FILE})")
    note = manifest.get("cover_note")
    if isinstance(note, str) and note.strip():
        print("  cover note:")
        for line in _shown(note, limit=4000, lines=True).splitlines():
            print(f"    {line}")
    print(
        f"  also written: {MANIFEST_FILE} (the approved manifest) and {PROOF_FILE} "
        "(check it on its own with `daylight audit verify --proof`)"
    )


def _add_trust_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("bundle", type=Path, help="the bundle file")
    command.add_argument(
        "--key", type=Path, required=True, help="your private key file (from `referral keygen`)"
    )
    command.add_argument(
        "--verifier-key",
        required=True,
        help="the sender's audit log verifier key (name+id+key), as given to you",
    )
    command.add_argument(
        "--witness-key", action="append", help="a witness's verifier key to require (repeat for several)"
    )
    command.add_argument(
        "--witnesses-required",
        type=int,
        help="how many of the --witness-key witnesses must have cosigned (default: all)",
    )


def register(commands: Commands) -> None:
    referral = add_group(commands, "referral", "referral bundles, on the recipient's side (no server needed)")
    keygen = referral.add_parser("keygen", help="make a recipient key pair")
    keygen.add_argument(
        "--name", required=True, help="who the key belongs to, e.g. 'Example Refugee Council'"
    )
    keygen.add_argument(
        "--private-key", type=Path, required=True, help="where to write the private key (0600)"
    )
    keygen.add_argument(
        "--public-key", type=Path, required=True, help="where to write the public key to hand over"
    )
    keygen.set_defaults(run=cmd_referral_keygen)
    verify = referral.add_parser(
        "verify", help="check every byte of a bundle and its approval; exit 1 if not"
    )
    _add_trust_options(verify)
    verify.set_defaults(run=cmd_referral_verify)
    opening = referral.add_parser("open", help="verify a bundle, then decrypt its items into a new folder")
    _add_trust_options(opening)
    opening.add_argument("--output", type=Path, required=True, help="a new or empty folder for the items")
    opening.set_defaults(run=cmd_referral_open)
    importing = referral.add_parser(
        "import", help="verify a referral from another organisation, then import it here as a new case"
    )
    _add_trust_options(importing)
    importing.add_argument("--data-dir", type=_data_dir, required=True)
    importing.add_argument(
        "--member", required=True, help="the username of a key holder here, the case's first member"
    )
    importing.set_defaults(run=cmd_referral_import)
