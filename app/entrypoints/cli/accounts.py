"""`daylight accounts invite` and `accounts confirm`: how an organisation gets its first admin and
its first lead."""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import select

from app.audit_log import events as audit
from app.auth.accounts import UsernameTaken, invite_account
from app.auth.confirmation import FingerprintMismatch, confirm_account
from app.auth.models import Role, StaffAccount
from app.entrypoints.cli.common import Commands, add_command, add_group, open_deployment
from app.kit.errors import AppError


def cmd_accounts_invite(args: argparse.Namespace) -> int:
    """Create an account and print its one-time activation link: how an organisation gets
    its first admin, who then invites everyone else from the staff UI."""
    with open_deployment(args.data_dir) as deployment:
        try:
            with deployment.database.transaction() as session:
                _, token = invite_account(
                    session,
                    username=args.username,
                    role=Role(args.role),
                    actor=audit.SYSTEM,
                    server_secrets=deployment.server_secrets,
                )
        except UsernameTaken:
            print(f"daylight: the username {args.username} is taken; nothing changed.", file=sys.stderr)
            return 1
    print(f"Created {args.username} ({args.role}). One-time activation link, valid 24 hours;")
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
    print(f"Confirmed the key pair of {args.username}. A lead can now grant them the intake key")
    print(f"(or, with no key holder yet: daylight keys recover --data-dir DIR --username {args.username}).")
    return 0


def register(commands: Commands) -> None:
    accounts = add_group(commands, "accounts", "staff accounts")
    invite = add_command(accounts, "invite", "create an account and print its activation link")
    invite.add_argument("--username", required=True)
    invite.add_argument("--role", choices=[role.value for role in Role], default=Role.ADMIN.value)
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
