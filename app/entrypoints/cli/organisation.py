"""`daylight init`, `demo` and `demo-code`: an organisation created, or a demo one."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import TypeVar

import pyotp
from sqlalchemy.exc import SQLAlchemyError

from app.entrypoints.cli.common import (
    Commands,
    Deployment,
    add_command,
    open_deployment,
    sign_what_the_command_recorded,
)
from app.entrypoints.demo import DEMO_TIPS, MAX_DEMO_REPORTS, create_demo, read_credentials
from app.entrypoints.deployment import IDENTITY_FILE, shown_database, unreachable
from app.entrypoints.organisation import OrganisationExists, init_organisation
from app.kit.config import Environment, Settings

CreatedT = TypeVar("CreatedT")


# Named with its underscore in argparse's message ("invalid _report_count value: 'x'"), like
# the type functions of app.entrypoints.cli.common.
def _report_count(value: str) -> int:
    number = int(value)
    if not len(DEMO_TIPS) <= number <= MAX_DEMO_REPORTS:
        raise argparse.ArgumentTypeError(f"must be from {len(DEMO_TIPS)} to {MAX_DEMO_REPORTS}, not {number}")
    return number


def _refuse_existing(exc: OrganisationExists) -> int:
    print(f"daylight: {exc}; nothing changed.", file=sys.stderr)
    return 1


def _failed(command: str, settings: Settings, exc: BaseException) -> None:
    reason = unreachable(settings, exc) if isinstance(exc, SQLAlchemyError) else type(exc).__name__
    print(
        f"daylight: {command} failed ({reason}). Everything it had made was removed, in the data "
        f"dir and in the database: fix the cause and run it again.",
        file=sys.stderr,
    )


def _create(command: str, deployment: Deployment, create: Callable[[], CreatedT]) -> CreatedT | int:
    """What ``create`` made, signed into the audit log; or the exit code when it made nothing
    (the organisation exists, or the database refused: both already reported)."""
    try:
        created = create()
    except OrganisationExists as exc:
        return _refuse_existing(exc)
    except SQLAlchemyError as exc:
        _failed(command, deployment.settings, exc)
        return 1
    except BaseException as exc:
        _failed(command, deployment.settings, exc)
        raise
    sign_what_the_command_recorded(deployment)
    return created


def _daylight(args: argparse.Namespace, *words: str) -> str:
    """A command to run next, with the settings file this one was given."""
    env_file = ("--env-file", str(args.env_file)) if getattr(args, "env_file", None) else ()
    return shlex.join(("daylight", *env_file, *words))


def cmd_init(args: argparse.Namespace) -> int:
    data_dir = str(args.data_dir)
    with open_deployment(args.data_dir, creating=True, sign_checkpoint=False) as deployment:
        settings = deployment.settings
        organisation = _create("init", deployment, lambda: init_organisation(settings, deployment.database))
        if isinstance(organisation, int):
            return organisation
    print(f"Created a Daylight organisation in {data_dir}.")
    print(f"Database: {shown_database(settings.sqlalchemy_url)}")
    print(f"Audit log origin: {settings.audit_log_origin}")
    print(f"(Recorded in {args.data_dir / IDENTITY_FILE}: every command refuses other settings.)\n")
    print("RECOVERY KEY (shown once; print it, store it offline, never on this server):\n")
    print(f"    {organisation.recovery_key}\n")
    print("It can grant the intake key again if no key holder is left.")
    print("\nNext:")
    print("  1. The first admin (prints their activation link):")
    print(f"       {_daylight(args, 'accounts', 'invite', '--data-dir', data_dir, '--username', 'YOU')}")
    print("  2. The first lead: once they have activated their account (invited from the staff app),")
    print("     they read you their key fingerprint in person; confirm it, then grant them the intake")
    print("     key with the recovery key (typed when asked, never stored on this server):")
    confirm = (
        "accounts",
        "confirm",
        "LEAD",
        "--data-dir",
        data_dir,
        "--fingerprint",
        "CODE",
    )
    print(f"       {_daylight(args, *confirm)}")
    print(f"       {_daylight(args, 'keys', 'grant-first', '--data-dir', data_dir, '--username', 'LEAD')}")
    print("  3. Check the deployment (it must print no FAIL):")
    print(f"       {_daylight(args, 'doctor', '--data-dir', data_dir)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    with open_deployment(
        args.data_dir, environment=Environment.DEVELOPMENT, creating=True, sign_checkpoint=False
    ) as deployment:
        settings = deployment.settings
        demo = _create(
            "demo", deployment, lambda: create_demo(settings, deployment.database, reports=args.reports)
        )
        if isinstance(demo, int):
            return demo
        organisation, accounts = demo
    print(f"Created a demo organisation in {args.data_dir}.")
    print(f"Database: {shown_database(settings.sqlalchemy_url)}")
    print(f"Recovery key (demo only): {organisation.recovery_key}")
    print(f"Demo reports: {args.reports}")
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
    demo = add_command(commands, "demo", "init plus demo accounts and tips")
    demo.add_argument(
        "--reports",
        type=_report_count,
        default=len(DEMO_TIPS),
        metavar="N",
        help=f"how many demo reports in all: the {len(DEMO_TIPS)} hand-written ones (the default), "
        f"then generated ones in four languages, up to {MAX_DEMO_REPORTS}",
    )
    demo.set_defaults(run=cmd_demo)
    code = add_command(commands, "demo-code", "print the current one-time code of demo accounts")
    code.add_argument("--username")
    code.set_defaults(run=cmd_demo_code)
