"""`daylight keys grant-first`, `keys recover` and `keys rotate`: intake key custody from the
command line."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.audit_log import events as audit
from app.auth.confirmation import is_confirmed
from app.auth.credentials import authenticate
from app.auth.models import Role, StaffAccount
from app.auth.permissions import Permission, role_has
from app.auth.principal import account_actor
from app.crypto import sealing
from app.crypto.errors import DecryptionError
from app.custody.models import IntakeKey
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
from app.keys.grants import current_key_holders, grant_intake_key
from app.kit.errors import AppError

FIRST_GRANT_EVENT = "key.grant_first"


class Refused(Exception):
    """Why a command changed nothing, in words for the operator; ``hint``: what to do about it."""

    def __init__(self, reason: str, hint: str | None = None) -> None:
        super().__init__(reason)
        self.hint = hint


def _refused(exc: Refused) -> int:
    print(f"daylight: {exc}; nothing changed.", file=sys.stderr)
    if exc.hint is not None:
        print(exc.hint, file=sys.stderr)
    return 1


# Raises Refused when the account may not be granted the key this way.
GrantCheck = Callable[[Session, IntakeKey, StaffAccount], None]


def _read_recovery_key() -> str:
    """The recovery key, never from an argument or a file the command opens: typed at a prompt
    that does not echo, or one line of stdin (piped from offline media, or by a test)."""
    if sys.stdin.isatty():
        print("Type the recovery key from the sheet printed at `daylight init`.", file=sys.stderr)
        return getpass.getpass("Recovery key (not shown): ", stream=sys.stderr)
    return sys.stdin.readline()


def _intake_key_and_account(session: Session, username: str) -> tuple[IntakeKey, StaffAccount]:
    intake_key = current_intake_key(session)
    if intake_key is None:
        raise Refused("no organisation here (`daylight init` creates one)")
    account = session.scalars(select(StaffAccount).where(StaffAccount.username == username)).first()
    if account is None:
        raise Refused(f"no account {username}")
    return intake_key, account


def grant_with_recovery_key(
    deployment: Deployment,
    username: str,
    *,
    action: str,
    check: GrantCheck | None = None,
    details: Mapping[str, audit.DetailValue] | None = None,
) -> int:
    """Open the current intake key with the recovery key (read from stdin) and grant it to
    ``username``, recorded as the system's ``action``; returns the key version granted.

    ``check`` runs before the recovery key is asked for (so that nobody types it in vain) and
    again in the transaction that grants. Refused, with nothing changed, for a wrong recovery
    key, a failed check, or an account that cannot hold the key (`grant_intake_key`)."""
    # Read before the recovery key is asked for, and outside the `except ValueError` below:
    # an unusable secret is the operator's to fix, not "the recovery key did not open it".
    key_integrity_key = deployment.server_secrets.key_integrity_key
    try:
        if check is not None:
            with deployment.database.transaction() as session:
                check(session, *_intake_key_and_account(session, username))
        try:
            recovery_key = _read_recovery_key()
        except (EOFError, KeyboardInterrupt):
            raise Refused("no recovery key was given") from None
        with deployment.database.transaction() as session:
            intake_key, account = _intake_key_and_account(session, username)
            if check is not None:
                check(session, intake_key, account)
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
                action,
                object_type="account",
                object_id=account.id,
                details={"key_version": intake_key.version, **(details or {})},
            )
            return intake_key.version
    except DecryptionError:
        raise Refused("the recovery key did not open the intake key") from None
    except ValueError as exc:  # not a recovery key, or an account that cannot hold the key
        raise Refused(str(exc)) from None
    except AppError as exc:  # a stored key that fails its check: the database was altered
        raise Refused(exc.public_message.rstrip(".")) from None


def cmd_keys_recover(args: argparse.Namespace) -> int:
    """Grant the intake key to a named member with the recovery key, when no key holder is left."""
    with open_deployment(args.data_dir) as deployment:
        try:
            grant_with_recovery_key(deployment, args.username, action="key.recover")
        except Refused as exc:
            return _refused(exc)
    print(f"Granted the intake key to {args.username}. It takes effect at their next login.")
    return 0


def _members(count: int) -> str:
    return "1 member already holds" if count == 1 else f"{count} members already hold"


def first_holder_check(data_dir: Path) -> GrantCheck:
    """What `keys grant-first` asks of the account: an activated lead whose key pair was
    confirmed, and nobody holding the current intake key yet."""

    def check(session: Session, _intake_key: IntakeKey, account: StaffAccount) -> None:
        name = account.username
        _, holders = current_key_holders(session)
        if holders:
            raise Refused(
                f"{_members(len(holders))} the intake key ({', '.join(h.username for h in holders)}): "
                "a lead grants it in the staff app (Key grants)"
            )
        if account.role != Role.LEAD:
            raise Refused(
                f"{name} is {'an' if account.role in (Role.ADMIN, Role.AUDITOR) else 'a'} {account.role}: "
                "the first key holder is a lead (an admin invites one in the staff app, Accounts)"
            )
        if not account.is_active:
            raise Refused(f"{name} is deactivated")
        if account.public_key is None or not account.can_log_in:
            raise Refused(
                f"{name} has not activated their account yet: they open their activation link first"
            )
        if not is_confirmed(account):
            raise Refused(
                f"the key pair of {name} has not been confirmed yet",
                f"Ask {name} to read out the key fingerprint shown on their account page, in person or "
                "on a channel you trust, and confirm it first:\n"
                f"  daylight accounts confirm {name} --data-dir {data_dir} --fingerprint 'CODE'",
            )

    return check


def cmd_keys_grant_first(args: argparse.Namespace) -> int:
    """Grant the intake key to the organisation's first key holder, a lead, with the recovery key."""
    with open_deployment(args.data_dir) as deployment:
        try:
            version = grant_with_recovery_key(
                deployment,
                args.username,
                action=FIRST_GRANT_EVENT,
                check=first_holder_check(args.data_dir),
                details={"username": args.username, "by": "operator"},
            )
        except Refused as exc:
            return _refused(exc)
    print(f"Granted intake key version {version} to {args.username}, the organisation's first key holder.")
    print(f"Next: {args.username} logs out and in again (the key is unlocked at login) and can open reports.")
    print("Then they grant the key to a second lead on the Key grants page of the staff app, so that")
    print("one lost password does not leave only the recovery key. Put the recovery key back offline.")
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
    first = add_command(
        keys,
        "grant-first",
        "grant the intake key to the first key holder, a confirmed lead, with the recovery key "
        "(typed at a prompt, or one line of stdin)",
    )
    first.add_argument("--username", required=True, help="the lead who will hold the key first")
    first.set_defaults(run=cmd_keys_grant_first)
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
