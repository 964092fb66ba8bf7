"""The `daylight` command (also `python -m app`): set up, run, back up and check a Daylight
deployment. Its commands, options and exit codes are a stable interface that scripts may rely
on; `daylight COMMAND --help` describes each."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator, Sequence

from app.entrypoints.cli import accounts, audit, keys, operations, organisation, referrals, server, stations
from app.entrypoints.cli.common import settings_in_use
from app.entrypoints.deployment import DeploymentRefused
from app.kit.config import ENV_FILE_VARIABLE, EnvFileError, env_file_path, settings_from_env_file

# In the order `daylight --help` lists the commands.
COMMAND_GROUPS = (organisation, keys, accounts, audit, operations, stations, referrals, server)

ENV_FILE_HELP = (
    "the deployment's settings file (KEY=value lines, e.g. /etc/daylight/daylight.env, the one the "
    f"systemd units read); default: ${ENV_FILE_VARIABLE}. A variable set in the environment wins "
    "over the file; the file wins over the data dir's own daylight.env. A file named but missing "
    "is an error."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="daylight", description=__doc__)
    parser.add_argument("--env-file", type=env_file_path, metavar="PATH", help=ENV_FILE_HELP)
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    # Also after the command (`daylight doctor --data-dir D --env-file F`), where operators put
    # options. SUPPRESS: a command's parser that was not given it leaves the global value alone.
    for command in _command_parsers(parser):
        command.add_argument(
            "--env-file", type=env_file_path, metavar="PATH", default=argparse.SUPPRESS, help=ENV_FILE_HELP
        )
    return parser


def _command_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """The parsers that run a command: those with no subcommands of their own."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                if any(isinstance(a, argparse._SubParsersAction) for a in child._actions):
                    yield from _command_parsers(child)
                else:
                    yield child


def main(argv: Sequence[str] | None = None) -> int:
    # Everything Daylight writes (database, blobs, secrets, credentials) is for
    # its own user only, whatever umask the operator's shell had.
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    try:
        # One source of settings for the service and every command: the env file's variables are
        # in the environment while the command runs (and in the processes `serve` starts).
        with settings_from_env_file(args.env_file) as env_file:
            args.env_file = env_file
            data_dir = getattr(args, "data_dir", None)
            if data_dir is not None:
                database = settings_in_use(data_dir)
                # Not for serve: its output is the service's journal, kept free of addresses.
                if args.command != "serve":
                    print(f"daylight: database {database}", file=sys.stderr)
            code: int = args.run(args)
            return code
    except (EnvFileError, DeploymentRefused) as exc:
        print(f"daylight: {exc}", file=sys.stderr)
        return 2
