"""`daylight init`, `demo` and `demo-code`: an organisation created, or a demo one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyotp

from app.entrypoints.cli.common import Commands, add_command, open_deployment
from app.entrypoints.demo import create_demo, read_credentials
from app.entrypoints.organisation import OrganisationExists, init_organisation
from app.kit.config import Environment


def _refuse_existing(data_dir: Path) -> int:
    print(f"daylight: an organisation already exists in {data_dir}; nothing changed.", file=sys.stderr)
    return 1


def cmd_init(args: argparse.Namespace) -> int:
    with open_deployment(args.data_dir) as deployment:
        try:
            organisation = init_organisation(deployment.settings, deployment.database)
        except OrganisationExists:
            return _refuse_existing(args.data_dir)
    print(f"Created a Daylight organisation in {args.data_dir}.\n")
    print("RECOVERY KEY (shown once; print it, store it offline, never on this server):\n")
    print(f"    {organisation.recovery_key}\n")
    print("It can grant the intake key again if no key holder is left.")
    print(f"\nNext: daylight accounts invite --data-dir {args.data_dir} --username YOU  (the first admin)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    with open_deployment(args.data_dir, environment=Environment.DEVELOPMENT) as deployment:
        try:
            organisation, accounts = create_demo(deployment.settings, deployment.database)
        except OrganisationExists:
            return _refuse_existing(args.data_dir)
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


def register(commands: Commands) -> None:
    add_command(commands, "init", "create an organisation; prints the recovery key once").set_defaults(
        run=cmd_init
    )
    add_command(commands, "demo", "init plus demo accounts and tips").set_defaults(run=cmd_demo)
    code = add_command(commands, "demo-code", "print the current one-time code of demo accounts")
    code.add_argument("--username")
    code.set_defaults(run=cmd_demo_code)
