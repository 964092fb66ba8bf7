"""`daylight keys recover` and `keys rotate`: intake key custody from the command line."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Mapping, Sequence

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from app.audit_log import events as audit
from app.auth.credentials import authenticate
from app.auth.models import StaffAccount
from app.auth.permissions import Permission, role_has
from app.auth.principal import account_actor
from app.crypto import sealing
from app.crypto.errors import DecryptionError
from app.custody.service import current_intake_key, recover_intake_key
from app.entrypoints.cli.common import (
    Commands,
    Deployment,
    _positive_int,
    add_command,
    add_group,
    open_deployment,
)
from app.keys import rotation
from app.keys.grants import grant_intake_key


def _read_recovery_key() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Recovery key: ")
    return sys.stdin.readline()


def cmd_keys_recover(args: argparse.Namespace) -> int:
    """Grant the intake key to a named member with the recovery key, when no key holder is left."""
    with open_deployment(args.data_dir) as deployment:
        # Read before the recovery key is asked for, and outside the `except ValueError` below:
        # an unusable secret is the operator's to fix, not "the recovery key did not open it".
        key_integrity_key = deployment.server_secrets.key_integrity_key
        recovery_key = _read_recovery_key()
        try:
            with deployment.database.transaction() as session:
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
                    key_integrity_key=key_integrity_key,
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
            reason = (
                "the recovery key did not open the intake key" if isinstance(exc, DecryptionError) else exc
            )
            print(f"daylight: {reason}; nothing changed.", file=sys.stderr)
            return 1
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
    args: argparse.Namespace, deployment: Deployment, versions: Sequence[int]
) -> tuple[Mapping[int, sealing.PrivateKey], audit.Actor]:
    """Open the key ``versions`` `keys rotate` needs: with a lead's login, or recovery keys."""
    if args.username is None:
        recovery_keys = _read_recovery_keys(versions)
        with deployment.database.transaction() as session:
            unlocked = rotation.unlock_with_recovery_keys(session, versions, recovery_keys)
        if not unlocked:
            raise rotation.RotationRefused("the recovery key did not open the intake key")
        return unlocked, audit.SYSTEM
    password, otp = _read_login()
    # The staff login's own check (lockout, one-time code, audit), in a transaction of its own:
    # a refused attempt is counted and recorded like one at the login page.
    with deployment.database.transaction() as session:
        found = authenticate(
            session,
            username=args.username,
            password=password,
            otp=otp,
            settings=deployment.settings,
            totp_key=deployment.server_secrets.totp_key,
            key_integrity_key=deployment.server_secrets.key_integrity_key,
        )
    if found is None:
        raise rotation.RotationRefused("the login was refused")
    account, keys = found
    if not role_has(account.role, Permission.MANAGE_KEY_GRANTS):
        raise rotation.RotationRefused("only a lead rotates the intake key")
    return keys.intake, account_actor(account)


def _confirm_recipients(args: argparse.Namespace, deployment: Deployment) -> None:
    """Before a rotation starts: who will hold the new key. A member whose copy of the old key
    may have leaked must have been revoked first, or the new key goes to them as well."""
    with deployment.database.transaction() as session:
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
    with open_deployment(args.data_dir) as deployment:
        # Read before anything is asked or shown: a missing secret stops the command up front.
        key_integrity_key = deployment.server_secrets.key_integrity_key
        try:
            with deployment.database.transaction() as session:
                versions = rotation.versions_to_unlock(session)
            unlocked, actor = _unlock_rotation_source(args, deployment, versions)
            if len(versions) == 1:  # starting; a resumed rotation made its grants when it started
                _confirm_recipients(args, deployment)
            report = rotation.run(
                deployment.database,
                unlocked,
                actor,
                key_integrity_key=key_integrity_key,
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
            print(
                "\ndaylight: interrupted; run the same command again to resume the rotation.", file=sys.stderr
            )
            return 130
        except DBAPIError as exc:
            # A lost connection, a deadlock with a purge, a conflicting concurrent run: each step
            # is its own transaction, so whatever committed stays and the rest resumes.
            print(
                f"\ndaylight: the database refused a step ({type(exc.orig).__name__}); run the same "
                "command again to resume the rotation.",
                file=sys.stderr,
            )
            return 1
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


def register(commands: Commands) -> None:
    keys = add_group(commands, "keys", "intake key custody")
    recover = add_command(keys, "recover", "grant the intake key with the recovery key (read from stdin)")
    recover.add_argument("--username", required=True)
    recover.set_defaults(run=cmd_keys_recover)
    rotate = add_command(
        keys,
        "rotate",
        "a new intake key, every data key re-sealed to it, the old one "
        "destroyed; resumable (recovery key, or a lead's password and "
        "one-time code, from stdin)",
    )
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
