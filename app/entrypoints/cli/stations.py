"""`daylight stations import` and `export`: the station registry as CSV or JSON."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.audit_log import events as audit
from app.entrypoints.cli.common import Commands, add_command, add_group, open_deployment, output
from app.stations import registry


def cmd_stations_import(args: argparse.Namespace) -> int:
    """Validate every row; show what would change; write only with --apply. Nothing on any error."""
    file_format = args.format or args.file.suffix.lstrip(".").lower()
    try:
        rows = registry.parse(args.file.read_bytes(), file_format)
    except registry.ImportRefused as exc:
        print(f"daylight: {exc.public_message}", file=sys.stderr)
        for problem in exc.fields:
            print(f"  - {problem['message']}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"daylight: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 1
    with open_deployment(args.data_dir) as deployment, deployment.database.transaction() as session:
        result = registry.apply(session, rows, audit.SYSTEM) if args.apply else registry.plan(session, rows)
    for row in result.created:
        print(f"  new      {row.city}, {row.country} ({row.operating_bureau}): {row.status.value}")
    for row, changes in result.updated:
        print(f"  changed  {row.city}, {row.country} ({row.operating_bureau}): {', '.join(changes)}")
    print(("imported: " if args.apply else "dry run, nothing written (add --apply): ") + result.summary())
    return 0


def cmd_stations_export(args: argparse.Namespace) -> int:
    with open_deployment(args.data_dir) as deployment, deployment.database.transaction() as session:
        stations = registry.all_stations(session)
        text = (
            registry.export_csv(stations) if args.format == "csv" else registry.export_json(stations) + "\n"
        )
        audit.record(session, audit.SYSTEM, "stations.export", details={"format": args.format})
    with output(args.output) as sink:
        sink.write(text)
    return 0


def register(commands: Commands) -> None:
    stations = add_group(commands, "stations", "the station registry")
    station_import = add_command(
        stations, "import", "import stations from CSV or JSON (a dry run unless --apply)"
    )
    station_import.add_argument("file", type=Path)
    station_import.add_argument(
        "--format", choices=["csv", "json"], help="default: from the file's extension"
    )
    station_import.add_argument("--apply", action="store_true", help="write the changes")
    station_import.set_defaults(run=cmd_stations_import)
    station_export = add_command(stations, "export", "the registry as CSV or JSON")
    station_export.add_argument("--format", choices=["csv", "json"], default="csv")
    station_export.add_argument("--output", type=Path)
    station_export.set_defaults(run=cmd_stations_export)
