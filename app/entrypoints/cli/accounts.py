"""`daylight accounts invite` and `accounts confirm`: how an organisation gets its first admin and
its first lead.

The command line invites the first admin only; everyone else is invited by an admin in the staff
app, where the invitation is recorded as theirs. An operator who must create an account here
anyway (the admins are all locked out, say) adds ``--force --role ROLE --reason TEXT``: the
`account.create` event records the operator and the reason.
"""

from __future__ import annotations

import argparse
import sys
import unicodedata

from sqlalchemy import select

from app.audit_log import events as audit
from app.auth.accounts import UsernameTaken, active_admins, invite_account
from app.auth.confirmation import FingerprintMismatch, confirm_account
from app.auth.models import Role, StaffAccount
from app.auth.schemas import check_new_username
from app.entrypoints.cli.common import Commands, add_command, add_group, open_deployment
from app.kit.errors import AppError

# What of a --reason goes into the audit log: a sentence, not a document (and never a secret:
# the activation link is printed, never recorded).
MAX_REASON_CHARS = 200


def _username(value: str) -> str:
    """As the staff app's Accounts form accepts it (argparse exits 2 with its message)."""
    try:
        return check_new_username(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}") from None


def audit_reason(text: str) -> str:
    """The operator's reason as one line for the audit log: control and format characters and
    runs of whitespace become one space, and it is cut to MAX_REASON_CHARS."""
    spaced = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    line = " ".join(spaced.split())
    return line if len(line) <= MAX_REASON_CHARS else f"{line[: MAX_REASON_CHARS - 1]}…"


def _usage_error(message: str) -> int:
    print(f"daylight accounts invite: error: {message}", file=sys.stderr)
    return 2


def cmd_accounts_invite(args: argparse.Namespace) -> int:
    """Create an account and print its one-time activation link: the organisation's first admin,
    who then invites everyone else from the staff app; with --force, any account, for a reason
    recorded in the audit log."""
    reason = audit_reason(args.reason or "")
    if args.force and (args.role is None or not reason):
        return _usage_error("--force needs --role ROLE and --reason TEXT (the reason is recorded)")
    if not args.force and args.reason is not None:
        return _usage_error("--reason goes with --force")
    if not args.force and args.role not in (None, Role.ADMIN.value):
        print(
            "daylight: the command line invites the first admin only; the admin invites leads, "
            "caseworkers and auditors in the staff app (Accounts). Nothing changed.",
            file=sys.stderr,
        )
        return 1
    role = Role(args.role or Role.ADMIN.value)
    details: dict[str, audit.DetailValue] = (
        {"by": "operator", "reason": reason} if args.force else {"by": "operator", "first_admin": True}
    )
    with open_deployment(args.data_dir) as deployment:
        try:
            with deployment.database.transaction() as session:
                admins = active_admins(session)
                if admins and not args.force:
                    print(
                        f"daylight: this organisation has an admin already ({', '.join(admins)}): an admin "
                        "invites members in the staff app (Accounts), where the invitation is recorded as "
                        "theirs. If no admin can (locked out, gone), add --force --role ROLE --reason TEXT; "
                        "the reason is recorded in the audit log. Nothing changed.",
                        file=sys.stderr,
                    )
                    return 1
                _, token = invite_account(
                    session,
                    username=args.username,
                    role=role,
                    actor=audit.SYSTEM,
                    server_secrets=deployment.server_secrets,
                    details=details,
                )
        except UsernameTaken:
            print(f"daylight: the username {args.username} is taken; nothing changed.", file=sys.stderr)
            return 1
    print(f"Created {args.username} ({role.value}). One-time activation link, valid 24 hours;")
    print("open it on the staff app (http://HOST:8001 on loopback, or the staff onion service):\n")
    print(f"    /link/{token}\n")
    return 0


def cmd_accounts_confirm(args: argparse.Namespace) -> int:
    """Confirm a member's key pair with the fingerprint they read out from their account page,
    as a lead does on the Key grants page: for the first lead, when there is no lead yet to do
    it. Recorded as the system's `account.confirm`; a mismatch is recorded too."""
    with open_deployment(args.data_dir) as deployment:
        key_integrity_key = deployment.server_secrets.key_integrity_key
        try:
            with deployment.database.transaction() as session:
                account = session.scalars(
                    select(StaffAccount).where(StaffAccount.username == args.username)
                ).first()
                if account is None:
                    print(f"daylight: no account {args.username}; nothing changed.", file=sys.stderr)
                    return 1
                # A mismatch returns (and its audit event commits), it does not raise.
                confirmed = confirm_account(
                    session,
                    account,
                    args.fingerprint,
                    actor=audit.SYSTEM,
                    key_integrity_key=key_integrity_key,
                )
        except AppError as exc:  # not activated yet, or a stored key that fails its check
            print(f"daylight: {exc.public_message} Nothing changed.", file=sys.stderr)
            return 1
    if not confirmed:
        print(f"daylight: {FingerprintMismatch.public_message} (recorded)", file=sys.stderr)
        return 1
    print(f"Confirmed the key pair of {args.username}. A lead can now grant them the intake key (or,")
    print("with no key holder yet, you do, with the recovery key:")
    print(f"  daylight keys grant-first --data-dir {args.data_dir} --username {args.username}).")
    return 0


def register(commands: Commands) -> None:
    accounts = add_group(commands, "accounts", "staff accounts")
    invite = add_command(
        accounts,
        "invite",
        "create the first admin and print its activation link (other accounts: the staff app, or --force)",
    )
    invite.add_argument("--username", required=True, type=_username)
    invite.add_argument(
        "--role",
        choices=[role.value for role in Role],
        help="admin without --force (the first admin); required with --force",
    )
    invite.add_argument(
        "--force",
        action="store_true",
        help="create an account although an admin exists (for an organisation whose admins cannot)",
    )
    invite.add_argument(
        "--reason", help="why --force: recorded in the audit log (one line, cut to 200 characters)"
    )
    invite.set_defaults(run=cmd_accounts_invite)
    confirm = add_command(
        accounts,
        "confirm",
        "confirm a member's key pair with the fingerprint they read out from their account page",
    )
    confirm.add_argument("username", metavar="USERNAME")
    confirm.add_argument(
        "--fingerprint", required=True, help="as the member reads it out (case, spaces, dashes ignored)"
    )
    confirm.set_defaults(run=cmd_accounts_confirm)
