"""`daylight accounts invite`: how an organisation gets its first admin."""

from __future__ import annotations

import argparse
import sys

from app.audit_log import events as audit
from app.auth.accounts import UsernameTaken, invite_account
from app.auth.models import Role
from app.entrypoints.cli.common import Commands, add_command, add_group, open_deployment


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


def register(commands: Commands) -> None:
    accounts = add_group(commands, "accounts", "staff accounts")
    invite = add_command(accounts, "invite", "create an account and print its activation link")
    invite.add_argument("--username", required=True)
    invite.add_argument("--role", choices=[role.value for role in Role], default=Role.ADMIN.value)
    invite.set_defaults(run=cmd_accounts_invite)
