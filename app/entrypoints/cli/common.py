"""What every `daylight` command shares: its argument types, and one way to open a data dir."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TextIO, TypeAlias

from app.kit.config import Settings, load_settings
from app.kit.db import Database
from app.kit.server_secrets import ServerSecrets, load_server_secrets

Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


# The type functions keep their leading underscore: argparse names them in its error message
# ("invalid _positive_int value: 'x'"), and that message is CLI output.
def _data_dir(value: str) -> Path:
    return Path(value).expanduser().resolve()


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def add_command(commands: Commands, name: str, help_text: str) -> argparse.ArgumentParser:
    """A command that works on one data dir, named by the required --data-dir."""
    command = commands.add_parser(name, help=help_text)
    command.add_argument("--data-dir", type=_data_dir, required=True)
    return command


def add_group(commands: Commands, name: str, help_text: str) -> Commands:
    """A command group (`daylight keys …`); a missing subcommand is named as ``NAME_command``."""
    return commands.add_parser(name, help=help_text).add_subparsers(dest=f"{name}_command", required=True)


@dataclass(frozen=True)
class Deployment:
    """A data dir as a command sees it: its settings, its database and its server secrets."""

    settings: Settings
    database: Database

    @cached_property
    def server_secrets(self) -> ServerSecrets:
        """Read on first use: `init` creates them, and commands that neither sign nor seal
        (purge, stations) never read them."""
        return load_server_secrets(self.settings.secrets_dir)


@contextlib.contextmanager
def open_deployment(data_dir: Path) -> Iterator[Deployment]:
    """The data dir's settings and database. The engine is disposed however the command ends:
    its pooled connections close now, not at garbage collection, so in-process runs
    (`main` called again and again) do not pile up PostgreSQL connections or SQLite handles."""
    settings = load_settings(data_dir)
    database = Database.from_settings(settings)
    try:
        yield Deployment(settings, database)
    finally:
        database.engine.dispose()


@contextlib.contextmanager
def output(path: Path | None) -> Iterator[TextIO]:
    """Standard output, or the file named by --output."""
    if path is None:
        yield sys.stdout
        return
    with path.open("w", encoding="utf-8") as handle:
        yield handle
