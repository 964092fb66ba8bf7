"""`daylight serve`: the intake and staff apps, each in its own worker processes."""

from __future__ import annotations

import argparse

from app.entrypoints import serve as serving
from app.entrypoints.cli.common import Commands, _positive_int, add_command
from app.kit.logs import configure_logging


def cmd_serve(args: argparse.Namespace) -> int:
    configure_logging()
    print(
        f"Intake app on http://{args.host}:{args.intake_port}/ ({args.intake_workers} workers)  "
        f"staff app on http://{args.host}:{args.staff_port}/ ({args.staff_workers} workers)",
        flush=True,
    )
    serving.serve(
        args.data_dir,
        host=args.host,
        intake_port=args.intake_port,
        staff_port=args.staff_port,
        intake_workers=args.intake_workers,
        staff_workers=args.staff_workers,
    )
    return 0


def register(commands: Commands) -> None:
    serve = add_command(commands, "serve", "serve the intake and staff apps")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--intake-port", type=int, default=8000)
    serve.add_argument("--staff-port", type=int, default=8001)
    serve.add_argument(
        "--intake-workers",
        type=_positive_int,
        default=serving.default_worker_count(),
        help="intake app processes (default: one per core)",
    )
    serve.add_argument(
        "--staff-workers",
        type=_positive_int,
        default=serving.default_worker_count(),
        help="staff app processes (default: one per core)",
    )
    serve.set_defaults(run=cmd_serve)
