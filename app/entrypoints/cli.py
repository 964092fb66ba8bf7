"""The `daylight` command (also `python -m app`). The stable contract is in DESIGN section 8."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pyotp
import uvicorn
from sqlalchemy import select

from app.auth.accounts import UsernameTaken, invite_account
from app.auth.models import Role, StaffAccount
from app.config import load_settings
from app.crypto.errors import DecryptionError
from app.db import Database
from app.entrypoints.apps import create_intake_app, create_staff_app
from app.entrypoints.demo import create_demo, read_credentials
from app.keys.organisation import OrganisationExists, init_organisation
from app.keys.server_secrets import load_server_secrets
from app.keys.service import current_intake_key, grant_intake_key, recover_intake_key


def _data_dir(value: str) -> Path:
    return Path(value).expanduser().resolve()


def cmd_init(args: argparse.Namespace) -> int:
    settings = load_settings(args.data_dir)
    try:
        organisation = init_organisation(settings, Database.from_settings(settings))
    except OrganisationExists:
        print(f"daylight: an organisation already exists in {args.data_dir}; nothing changed.",
              file=sys.stderr)
        return 1
    print(f"Created a Daylight organisation in {args.data_dir}.\n")
    print("RECOVERY KEY (shown once; print it, store it offline, never on this server):\n")
    print(f"    {organisation.recovery_key}\n")
    print("It can grant the intake key again if no key holder is left.")
    print(f"\nNext: daylight accounts invite --data-dir {args.data_dir} --username YOU  (the first admin)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    settings = load_settings(args.data_dir)
    try:
        organisation, accounts = create_demo(settings, Database.from_settings(settings))
    except OrganisationExists:
        print(f"daylight: an organisation already exists in {args.data_dir}; nothing changed.",
              file=sys.stderr)
        return 1
    print(f"Created a demo organisation in {args.data_dir}.")
    print(f"Recovery key (demo only): {organisation.recovery_key}")
    print(f"Demo logins are in {args.data_dir / 'demo-credentials.json'}:")
    for account in accounts:
        print(f"  {account.role:<11} {account.username:<17} {account.password}")
    return 0


def cmd_demo_code(args: argparse.Namespace) -> int:
    for account in read_credentials(args.data_dir):
        if args.username in (None, account.username):
            print(f"{account.username:<17} {pyotp.TOTP(account.totp_secret).now()}")
    return 0


def _read_recovery_key() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Recovery key: ")
    return sys.stdin.readline()


def cmd_keys_recover(args: argparse.Namespace) -> int:
    """Grant the intake key to a named member with the recovery key, when no key holder is left."""
    settings = load_settings(args.data_dir)
    database = Database.from_settings(settings)
    server_secrets = load_server_secrets(settings.secrets_dir)
    recovery_key = _read_recovery_key()
    try:
        with database.transaction() as session:
            intake_key = current_intake_key(session)
            account = session.scalars(
                select(StaffAccount).where(StaffAccount.username == args.username)).first()
            if intake_key is None or account is None:
                print("daylight: no such organisation or account; nothing changed.", file=sys.stderr)
                return 1
            intake_private = recover_intake_key(intake_key, recovery_key)
            grant_intake_key(session, intake_key=intake_key, intake_private=intake_private, grantee=account,
                             granted_by_id=None, key_integrity_key=server_secrets.key_integrity_key)
    except (ValueError, DecryptionError) as exc:
        reason = "the recovery key did not open the intake key" if isinstance(exc, DecryptionError) else exc
        print(f"daylight: {reason}; nothing changed.", file=sys.stderr)
        return 1
    print(f"Granted the intake key to {args.username}. It takes effect at their next login.")
    return 0


def cmd_accounts_invite(args: argparse.Namespace) -> int:
    """Create an account and print its one-time activation link: how an organisation gets
    its first admin, who then invites everyone else from the staff UI."""
    settings = load_settings(args.data_dir)
    database = Database.from_settings(settings)
    server_secrets = load_server_secrets(settings.secrets_dir)
    try:
        with database.transaction() as session:
            _, token = invite_account(session, username=args.username, role=Role(args.role),
                                      created_by_id=None, server_secrets=server_secrets)
    except UsernameTaken:
        print(f"daylight: the username {args.username} is taken; nothing changed.", file=sys.stderr)
        return 1
    print(f"Created {args.username} ({args.role}). One-time activation link, valid 24 hours;")
    print("open it on the staff app (http://HOST:8001 on loopback, or the staff onion service):\n")
    print(f"    /link/{token}\n")
    return 0


async def _serve_both(args: argparse.Namespace) -> None:
    settings = load_settings(args.data_dir)
    servers = [
        uvicorn.Server(uvicorn.Config(
            # Each app its own connection pool: the public app's load cannot
            # starve the staff app of connections.
            factory(settings, database=Database.from_settings(settings)), host=args.host, port=port,
            # No access log: it would record client addresses and request times.
            access_log=False,
            # Never take a client address from X-Forwarded-For or similar.
            proxy_headers=False, forwarded_allow_ips="",
            server_header=False, log_level="warning", lifespan="off",
        ))
        for factory, port in ((create_intake_app, args.intake_port), (create_staff_app, args.staff_port))
    ]
    print(f"Intake app on http://{args.host}:{args.intake_port}/  "
          f"staff app on http://{args.host}:{args.staff_port}/", flush=True)
    await asyncio.gather(*(server.serve() for server in servers))


def cmd_serve(args: argparse.Namespace) -> int:
    asyncio.run(_serve_both(args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="daylight", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--data-dir", type=_data_dir, required=True)
        return sub

    command("init", "create an organisation; prints the recovery key once").set_defaults(run=cmd_init)
    command("demo", "init plus demo accounts and tips").set_defaults(run=cmd_demo)
    code = command("demo-code", "print the current one-time code of demo accounts")
    code.add_argument("--username")
    code.set_defaults(run=cmd_demo_code)
    keys = commands.add_parser("keys", help="intake key custody").add_subparsers(dest="keys_command",
                                                                                 required=True)
    recover = keys.add_parser("recover", help="grant the intake key with the recovery key (read from stdin)")
    recover.add_argument("--data-dir", type=_data_dir, required=True)
    recover.add_argument("--username", required=True)
    recover.set_defaults(run=cmd_keys_recover)
    accounts = commands.add_parser("accounts", help="staff accounts").add_subparsers(
        dest="accounts_command", required=True)
    invite = accounts.add_parser("invite", help="create an account and print its activation link")
    invite.add_argument("--data-dir", type=_data_dir, required=True)
    invite.add_argument("--username", required=True)
    invite.add_argument("--role", choices=[role.value for role in Role], default=Role.ADMIN.value)
    invite.set_defaults(run=cmd_accounts_invite)
    serve = command("serve", "serve the intake and staff apps")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--intake-port", type=int, default=8000)
    serve.add_argument("--staff-port", type=int, default=8001)
    serve.set_defaults(run=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Everything Daylight writes (database, blobs, secrets, credentials) is for
    # its own user only, whatever umask the operator's shell had.
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code
