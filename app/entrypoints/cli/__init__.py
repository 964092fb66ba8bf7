"""The `daylight` command (also `python -m app`). The stable contract is in DESIGN section 8."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

from app.entrypoints.cli import accounts, audit, keys, operations, organisation, server, stations

# In the order `daylight --help` lists the commands.
COMMAND_GROUPS = (organisation, keys, accounts, audit, operations, stations, server)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="daylight", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Everything Daylight writes (database, blobs, secrets, credentials) is for
    # its own user only, whatever umask the operator's shell had.
    os.umask(0o077)
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code
